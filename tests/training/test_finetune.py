"""Fine-tuning: a run that starts from a model's weights, adapted to a z-stack, refused when it cannot fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from labelfree_app.errors import TrainingDataError
from labelfree_app.models.package import load_package
from labelfree_app.training.config import PairSpec
from labelfree_app.training.finetune import LR_FACTOR, PATIENCE
from labelfree_app.training.loop import train
from tests.factories import make_unet_package
from tests.training.conftest import smooth_texture, tiny_config, write_pair


def _manifest(package_dir: Path) -> dict:
    return json.loads((Path(package_dir) / "manifest.json").read_text())


def test_a_zero_step_fine_tune_keeps_the_parent_weights_and_records_the_parent(tmp_path, trained):
    parent = load_package(trained["package"])
    out = train(tiny_config(trained["pair"], tmp_path / "child", max_steps=0, init_from=str(parent.path)))
    child = load_package(out)
    for key, value in parent.state_dict().items():
        assert torch.equal(child.state_dict()[key], value), key
    settings = _manifest(out)["training"]["settings"]
    assert settings["init_from"]["sha256"] == parent.manifest.weights.sha256
    assert settings["init_from"]["id"] == parent.manifest.id
    assert settings["lr"] == pytest.approx(LR_FACTOR * 1e-3)
    assert settings["early_stop_patience"] == PATIENCE


def test_fine_tuning_adopts_the_parents_network_size_and_normalization(tmp_path, synthetic_pair):
    parent = make_unet_package(tmp_path / "models", depth=2, base=4, model_id="parent",
                               normalization={"input": {"method": "percentile", "params": {}}, "output": None})
    out = train(tiny_config(synthetic_pair, tmp_path / "child", max_steps=3, init_from=str(parent.path)))
    manifest = _manifest(out)
    assert manifest["architecture"]["kwargs"]["base_channels"] == 4  # not the run's own 8
    assert manifest["normalization"]["input"]["method"] == "percentile"
    assert "parent" in manifest["description"]


def test_a_single_plane_parent_starts_a_z_stack_model_that_predicts_what_it_did(tmp_path):
    """Spreading the first layer over the planes: a stack of identical planes gives the parent's output."""
    parent = make_unet_package(tmp_path / "models", depth=2, base=4, model_id="plane-model")
    plane = smooth_texture((64, 64), seed=1)
    (tmp_path / "d").mkdir()
    tifffile.imwrite(tmp_path / "d" / "stack.tif", np.stack([plane] * 3), metadata={"axes": "ZYX"}, photometric="minisblack")
    tifffile.imwrite(tmp_path / "d" / "target.tif", plane)
    pair = (tmp_path / "d" / "stack.tif", tmp_path / "d" / "target.tif")
    out = train(tiny_config(pair, tmp_path / "stack-model", max_steps=0, init_from=str(parent.path),
                            val_region="32:64,32:64"))
    child = load_package(out)
    assert child.manifest.input.channels == 3 and child.manifest.input.z_as_channels
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 1, 32, 32)).astype(np.float32))
    with torch.inference_mode():
        expected = parent.build_network()(x)
        got = child.build_network()(x.repeat(1, 3, 1, 1))
    assert torch.allclose(got, expected, atol=1e-5)


def test_a_parent_that_takes_other_channels_is_refused_in_one_sentence(tmp_path, synthetic_pair):
    parent = make_unet_package(tmp_path / "models", in_channels=2, model_id="two-channel")
    with pytest.raises(TrainingDataError, match="takes 2 input channel"):
        train(tiny_config(synthetic_pair, tmp_path / "child", max_steps=1, init_from=str(parent.path)))


def test_a_parent_of_another_kind_or_a_missing_one_is_refused(tmp_path, synthetic_pair):
    parent = make_unet_package(tmp_path / "models", model_id="unet-parent")
    with pytest.raises(TrainingDataError, match="unet model but this run trains a diffusion"):
        train(tiny_config(synthetic_pair, tmp_path / "a", model_type="diffusion", init_from=str(parent.path)))
    with pytest.raises(TrainingDataError, match="Cannot start from 'no-such-model'"):
        train(tiny_config(synthetic_pair, tmp_path / "b", init_from="no-such-model"))


def test_early_stopping_ends_a_run_that_no_longer_improves(tmp_path, synthetic_pair):
    events: list = []
    out = train(tiny_config(synthetic_pair, tmp_path / "flat", lr=0.0, max_steps=400, val_every=10,
                            early_stop_patience=3), progress=events.append)
    finished = events[-1]
    assert finished.stop_reason == "early_stop"
    # three validations after the best one, none better (lr 0: only batch-norm statistics move)
    assert finished.steps == finished.best_step + 3 * 10 < 400
    assert _manifest(out)["training"]["settings"]["stop_reason"] == "early_stop"


def test_snapshots_are_saved_at_the_asked_minutes(tmp_path, synthetic_pair):
    train(tiny_config(synthetic_pair, tmp_path / "snap", max_steps=5, snapshot_minutes=(0.0,),
                      work_dir=tmp_path / "work"))
    assert (tmp_path / "work" / "snapshots" / "0min.safetensors").is_file()


def test_pairs_from_a_stack_plane_by_plane(tmp_path):
    from labelfree_app.training.datasets import load_pair

    planes = [smooth_texture((48, 48), seed=s) for s in range(3)]
    tifffile.imwrite(tmp_path / "stack.tif", np.stack(planes), metadata={"axes": "ZYX"}, photometric="minisblack")
    tifffile.imwrite(tmp_path / "target.tif", planes[0])
    pair = load_pair(PairSpec(str(tmp_path / "stack.tif"), str(tmp_path / "target.tif"), plane=2), dims=2,
                     input_normalization="zscore")
    assert pair.input.shape == (1, 48, 48) and not pair.z_as_channels
    expected = (planes[2] - planes[2].mean()) / planes[2].std()
    assert np.allclose(pair.input[0], expected, atol=1e-3)
    with pytest.raises(TrainingDataError, match="has 3 z-plane"):
        load_pair(PairSpec(str(tmp_path / "stack.tif"), str(tmp_path / "target.tif"), plane=3), dims=2,
                  input_normalization="zscore")


def test_a_pair_with_a_known_pixel_size_is_rescaled_to_the_canonical_size(tmp_path):
    from labelfree_app.training.datasets import load_pair

    source, target = write_pair(tmp_path, "f", shape=(64, 80))
    spec = PairSpec(str(source), str(target), pixel_size_um=0.5)
    pair = load_pair(spec, dims=2, input_normalization="zscore", pixel_size_um=0.25)
    assert pair.input.shape == (1, 128, 160) and pair.target.shape == (1, 128, 160) and pair.scale_known
    plain = load_pair(PairSpec(str(source), str(target)), dims=2, input_normalization="zscore", pixel_size_um=0.25)
    assert plain.input.shape == (1, 64, 80) and not plain.scale_known  # the file states no size
