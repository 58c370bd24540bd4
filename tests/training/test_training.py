"""The training loop: it learns, writes a loadable package, resumes exactly, keeps its budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from labelfree_app.errors import TrainingDataError
from labelfree_app.training.checkpoint import list_checkpoints, load_latest_checkpoint
from labelfree_app.training.config import UNetSettings
from labelfree_app.training.events import LoadingData, StepDone, TrainFinished, TrainStarted, ValidationDone
from labelfree_app.training.log import read_log
from labelfree_app.training.loop import run_training, train

from .conftest import tiny_config as _config
from .conftest import write_pair

def _started(events: list[object]) -> TrainStarted:
    return next(e for e in events if isinstance(e, TrainStarted))


def _manifest(package: Path) -> dict:
    return json.loads((package / "manifest.json").read_text())


def test_short_unet_training_beats_the_untrained_network(trained: dict) -> None:
    trained_r = _manifest(trained["package"])["metrics"]["pearson_r"]
    untrained_r = _manifest(trained["untrained_package"])["metrics"]["pearson_r"]
    assert trained_r > 0.9
    assert trained_r > untrained_r + 0.2
    losses = [e.loss for e in trained["events"] if isinstance(e, StepDone)]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])


def test_training_events_and_log_follow_the_run(trained: dict) -> None:
    events = trained["events"]
    assert [type(e) for e in events[:3]] == [LoadingData, LoadingData, TrainStarted]
    assert events[2].start_step == 0
    assert isinstance(events[-1], TrainFinished) and events[-1].stop_reason == "max_steps"
    assert [e.step for e in events if isinstance(e, ValidationDone)] == [50, 100]
    rows = read_log(Path(f"{trained['package']}.training") / "log.csv")
    assert [int(r["step"]) for r in rows if r["train_loss"]] == list(range(10, 101, 10))
    assert [int(r["step"]) for r in rows if r["val_r"]] == [50, 100]


def test_trained_package_loads_and_predicts_with_its_metrics(trained: dict) -> None:
    from labelfree_app.core.engine import PredictionEngine
    from labelfree_app.io import read_image
    from labelfree_app.models.package import load_package

    package = load_package(trained["package"])
    manifest = package.manifest.to_dict()
    assert manifest["kind"] == "unet" and manifest["architecture"]["id"] == "fnet_unet"
    assert manifest["training"]["steps"] == 100 and manifest["training"]["device"] == "cpu"
    assert manifest["metrics"]["pearson_r"] > 0.9 and "64:128,64:128" in manifest["metrics"]["test_region"]
    assert manifest["normalization"]["input"]["method"] == "zscore"
    assert "z-score" in manifest["training"]["settings"]["target_normalization"]["note"]
    result = PredictionEngine(package, device="cpu").predict(read_image(trained["pair"][0]))
    assert result.prediction.shape == (1, 1, 128, 128)


def test_resume_after_a_stop_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    pair = write_pair(tmp_path / "data", "field", shape=(128, 128), seed=4)
    settings = dict(max_steps=20, val_every=10, checkpoint_every=10, warmup_steps=4)
    straight = train(_config(pair, tmp_path / "straight", **settings))

    stop = {"now": False}

    def watch(event: object) -> None:
        if isinstance(event, StepDone) and event.step == 10:
            stop["now"] = True

    stopped = train(_config(pair, tmp_path / "split", **settings), progress=watch, should_stop=lambda: stop["now"])
    assert _manifest(stopped)["training"]["settings"]["stop_reason"] == "stopped"
    assert _manifest(stopped)["training"]["steps"] == 10
    events: list[object] = []
    resumed = train(_config(pair, tmp_path / "split", resume=True, **settings), progress=events.append)
    assert _started(events).start_step == 10
    assert [e.step for e in events if isinstance(e, StepDone)][0] == 11

    a = load_latest_checkpoint(Path(f"{straight}.training") / "checkpoints")
    b = load_latest_checkpoint(Path(f"{resumed}.training") / "checkpoints")
    assert a.step == b.step == 20
    for key, value in a.model_state.items():
        assert torch.equal(value, b.model_state[key]), key
    state_a, state_b = a.optimizer_blob["optimizer"]["state"], b.optimizer_blob["optimizer"]["state"]
    for index in state_a:
        assert torch.equal(state_a[index]["exp_avg_sq"], state_b[index]["exp_avg_sq"])
    log_a = read_log(Path(f"{straight}.training") / "log.csv")
    log_b = read_log(Path(f"{resumed}.training") / "log.csv")
    strip = [(r["step"], r["train_loss"], r["val_r"]) for r in log_a]
    assert strip == [(r["step"], r["train_loss"], r["val_r"]) for r in log_b]


def test_closing_the_run_pauses_it_at_a_checkpoint(tmp_path: Path) -> None:
    pair = write_pair(tmp_path / "data", "field", shape=(128, 128), seed=5)
    config = _config(pair, tmp_path / "model", max_steps=30, checkpoint_every=100, val_every=100)
    run = run_training(config)
    for event in run:
        if isinstance(event, StepDone) and event.step == 7:
            break
    run.close()
    work = Path(f"{tmp_path / 'model'}.training")
    assert [p.name for p in list_checkpoints(work / "checkpoints")] == ["step-00000007"]
    assert not (tmp_path / "model" / "manifest.json").exists()
    events: list[object] = []
    train(config.with_changes(resume=True), progress=events.append)
    assert _started(events).start_step == 7 and events[-1].steps == 30


def test_the_wall_clock_budget_stops_training_and_still_writes_the_package(tmp_path: Path) -> None:
    pair = write_pair(tmp_path / "data", "field", shape=(128, 128), seed=6)
    events: list[object] = []
    package = train(_config(pair, tmp_path / "model", max_steps=100_000, max_minutes=0.005), progress=events.append)
    finished = events[-1]
    assert finished.stop_reason == "max_minutes" and 0 < finished.steps < 100_000
    assert finished.seconds < 30
    assert _manifest(package)["training"]["settings"]["stop_reason"] == "max_minutes"


def test_a_new_run_refuses_to_overwrite_an_earlier_one(trained: dict) -> None:
    config = _config(trained["pair"], trained["package"], max_steps=1)
    with pytest.raises(TrainingDataError, match="already holds files"):
        train(config)


def test_resume_with_other_network_settings_is_refused(tmp_path: Path) -> None:
    pair = write_pair(tmp_path / "data", "field", shape=(128, 128), seed=7)
    train(_config(pair, tmp_path / "model", max_steps=2))
    wider = _config(pair, tmp_path / "model", max_steps=4, resume=True, unet=UNetSettings(depth=2, base_channels=16))
    with pytest.raises(TrainingDataError, match="other model settings"):
        train(wider)


def test_a_missing_file_fails_before_any_training(tmp_path: Path) -> None:
    pair = write_pair(tmp_path / "data", "field", shape=(64, 64))
    config = _config((pair[0], tmp_path / "gone.tif"), tmp_path / "model")
    run = run_training(config)
    with pytest.raises(TrainingDataError, match="gone.tif does not exist"):
        next(run)


def test_tiny_diffusion_training_writes_a_loadable_package(tmp_path: Path) -> None:
    from labelfree_app.models.package import load_package

    pair = write_pair(tmp_path / "data", "field", shape=(128, 128), seed=8)
    config = _config(pair, tmp_path / "diffusion", model_type="diffusion", max_steps=6, val_every=3,
                     checkpoint_every=3)
    events: list[object] = []
    package_path = train(config, progress=events.append)
    package = load_package(package_path)
    manifest = package.manifest.to_dict()
    assert manifest["kind"] == "diffusion" and manifest["architecture"]["id"] == "cond_denoiser_unet"
    assert manifest["diffusion"]["prediction"] == "v" and manifest["diffusion"]["samples"] == 2
    for key in ("pearson_r", "within_1sigma", "within_2sigma", "std_error_spearman"):
        assert key in manifest["metrics"]
    assert len([e for e in events if isinstance(e, ValidationDone)]) == 2
    checkpoint = load_latest_checkpoint(Path(f"{package_path}.training") / "checkpoints")
    assert checkpoint.ema_state is not None and checkpoint.step == 6
    weights = load_file(str(package_path / "weights.safetensors"))
    assert set(weights) == set(checkpoint.ema_state)
    network = package.build_network(torch.device("cpu"))
    assert sum(p.numel() for p in network.parameters()) > 0


def test_a_3d_unet_trains_on_z_stacks(tmp_path: Path) -> None:
    import tifffile

    from .conftest import blurred, smooth_texture

    stack = smooth_texture((8, 48, 48), 10, sigma=1.5)
    tifffile.imwrite(tmp_path / "in.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "tg.tif", blurred(stack, 1.0), imagej=True, metadata={"axes": "ZYX"})
    config = _config((tmp_path / "in.tif", tmp_path / "tg.tif"), tmp_path / "model3d", dims=3,
                     patch_shape=(4, 16, 16), val_region="24:48,24:48", max_steps=4, val_every=2)
    package = train(config)
    manifest = _manifest(package)
    assert manifest["dims"] == 3 and manifest["input"]["axes"] == "CZYX"
    assert manifest["tiling"]["tile_shape"] == [32, 128, 128]
    assert np.isfinite(manifest["metrics"]["pearson_r"])


def test_a_residual_diffusion_model_trains_around_a_frozen_unet(tmp_path: Path, trained: dict) -> None:
    from labelfree_app.core.engine import PredictionEngine, PredictSettings
    from labelfree_app.io import read_image
    from labelfree_app.models.package import load_package
    from labelfree_app.training.config import DiffusionSettings

    from .conftest import TINY_DIFFUSION

    unet = load_package(trained["package"])
    settings = DiffusionSettings(**{**TINY_DIFFUSION.__dict__, "mean_model": str(trained["package"])})
    config = _config(trained["pair"], tmp_path / "residual", model_type="diffusion", max_steps=4, val_every=2,
                     checkpoint_every=4, diffusion=settings)
    package = load_package(train(config))
    manifest = package.manifest.to_dict()
    assert manifest["architecture"]["id"] == "residual_cond_denoiser"
    weights = package.state_dict()
    for key, value in unet.state_dict().items():  # the U-Net inside is the given one, untouched by training
        torch.testing.assert_close(weights[f"mean_net.{key}"], value)
    image = read_image(trained["pair"][0])
    result = PredictionEngine(package, device="cpu").predict(image, PredictSettings(samples=2, steps=3, seed=0))
    unet_result = PredictionEngine(unet, device="cpu").predict(image, PredictSettings())
    assert result.variance is not None and np.isfinite(result.prediction).all()
    # Four steps cannot teach the residual much: the mean stays close to the U-Net's prediction.
    r = np.corrcoef(np.ravel(result.prediction), np.ravel(unet_result.prediction))[0, 1]
    assert r > 0.9


def test_a_residual_diffusion_model_refuses_a_mean_model_that_is_not_a_unet(tmp_path: Path) -> None:
    from labelfree_app.training.config import DiffusionSettings

    from .conftest import TINY_DIFFUSION

    pair = write_pair(tmp_path / "data", "field", shape=(128, 128), seed=8)
    diffusion = train(_config(pair, tmp_path / "plain", model_type="diffusion", max_steps=1, val_every=0,
                              checkpoint_every=0))
    settings = DiffusionSettings(**{**TINY_DIFFUSION.__dict__, "mean_model": str(diffusion)})
    with pytest.raises(TrainingDataError, match="not a U-Net"):
        train(_config(pair, tmp_path / "residual", model_type="diffusion", max_steps=1, diffusion=settings))


def test_a_residual_diffusion_model_takes_its_mean_models_input_normalization(tmp_path: Path) -> None:
    from labelfree_app.training.config import DiffusionSettings

    from .conftest import TINY_DIFFUSION

    pair = write_pair(tmp_path / "data", "field", shape=(128, 128), seed=9)
    unet = train(_config(pair, tmp_path / "unet", max_steps=2, val_every=0, checkpoint_every=0,
                         input_normalization="percentile"))
    settings = DiffusionSettings(**{**TINY_DIFFUSION.__dict__, "mean_model": str(unet)})
    with pytest.raises(TrainingDataError, match="normalizes its input by percentile"):
        train(_config(pair, tmp_path / "zscore", model_type="diffusion", max_steps=1, diffusion=settings))
    package = train(_config(pair, tmp_path / "residual", model_type="diffusion", max_steps=1, val_every=0,
                            checkpoint_every=0, diffusion=settings, input_normalization="percentile"))
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["normalization"]["input"]["method"] == "percentile"


def test_a_run_cut_short_by_its_minutes_ends_with_an_annealed_learning_rate(tmp_path: Path) -> None:
    """The cosine schedule follows the time budget when that ends first (a 2-minute fine-tune anneals)."""
    pair = write_pair(tmp_path / "data", "field", shape=(128, 128), seed=6)
    events: list[object] = []
    train(_config(pair, tmp_path / "model", max_steps=100_000, max_minutes=0.02, warmup_steps=1,
                  lr_schedule="cosine"), progress=events.append)
    lrs = [e.lr for e in events if type(e).__name__ == "StepDone"]
    assert len(lrs) > 5
    assert lrs[-1] < 0.7 * max(lrs)  # by steps alone it would still be at ~100 %
    assert all(b <= a + 1e-12 for a, b in zip(lrs[1:], lrs[2:]))
    from labelfree_app.training.optim import lr_at

    spent = lr_at(10, base_lr=1.0, max_steps=100_000, warmup_steps=1, schedule="cosine", time_fraction=1.0)
    half = lr_at(10, base_lr=1.0, max_steps=100_000, warmup_steps=1, schedule="cosine", time_fraction=0.5)
    assert spent == pytest.approx(0.01) and half == pytest.approx(0.505)


def test_weight_averaging_keeps_an_average_of_the_unet_weights(tmp_path: Path) -> None:
    """With ema_decay the package holds the averaged weights, which differ from the last step's."""
    import dataclasses

    from labelfree_app.models.package import load_package

    pair = write_pair(tmp_path / "data", "field", shape=(128, 128), seed=3)
    base = _config(pair, tmp_path / "plain", max_steps=12, val_every=0)
    plain = load_package(train(base)).state_dict()
    averaged_config = base.with_changes(out_dir=tmp_path / "avg", work_dir=tmp_path / "avg-work",
                                        unet=dataclasses.replace(base.unet, ema_decay=0.9))
    averaged = load_package(train(averaged_config)).state_dict()
    last = load_file(str(sorted((tmp_path / "avg-work" / "checkpoints").glob("*/model.safetensors"))[-1]))
    key = next(k for k in plain if k.endswith("weight"))
    assert torch.equal(plain[key], last[key])  # same seed, same steps: the live weights are the plain run's
    assert not torch.allclose(averaged[key], last[key])
    with pytest.raises(TrainingDataError, match="weight-averaging"):
        train(base.with_changes(unet=dataclasses.replace(base.unet, ema_decay=1.0)))


def test_an_annealed_run_keeps_its_final_weights_and_a_constant_rate_run_its_best(tmp_path: Path) -> None:
    """The package of a cosine run that used its budget holds the last step's weights; with a constant
    rate it holds the best validated step's weights (and the card says which)."""
    pair = write_pair(tmp_path / "data", "field", shape=(128, 128), seed=4)
    for schedule in ("cosine", "constant"):
        events: list[object] = []
        work = tmp_path / f"{schedule}-work"
        package = train(_config(pair, tmp_path / schedule, work_dir=work, max_steps=40, val_every=5,
                                checkpoint_every=0, lr_schedule=schedule), progress=events.append)
        finished = events[-1]
        kept = load_file(str(package / "weights.safetensors"))
        final = load_file(str(sorted((work / "checkpoints").glob("*/model.safetensors"))[-1]))
        best = load_file(str(work / "best.safetensors"))
        key = next(k for k in kept if k.endswith("weight"))
        source = _manifest(package)["metrics"]["source"]
        if schedule == "cosine":
            assert torch.equal(kept[key], final[key]) and finished.kept_step == 40 and "final step" in source
        else:
            assert finished.best_step != 40  # seeded: the best step is not the last, so the two rules differ
            assert torch.equal(kept[key], best[key]) and finished.kept_step == finished.best_step
            assert "best step" in source
        assert "kept the" in finished.summary()
