"""The prediction engine: input arrangement, tiling, backends, TTA, diffusion, cancelling."""

from __future__ import annotations

import numpy as np
import pytest

from labelfree_app.core.engine import PredictionEngine, PredictSettings
from labelfree_app.core.events import PredictionResult, Preview, Progress
from labelfree_app.errors import ChannelError, InputShapeError
from labelfree_app.io import Image
from tests.factories import make_diffusion_package, make_unet_package


def _image(array: np.ndarray, names: list[str] | None = None) -> Image:
    return Image.from_array(array, "CZYX", channel_names=names)


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_unet_prediction_has_canonical_shape_and_ends_with_the_result(tmp_path, rng):
    engine = PredictionEngine(make_unet_package(tmp_path), device="cpu")
    events = list(engine.run(_image(rng.normal(100, 10, (1, 1, 70, 90)).astype(np.float32))))
    assert isinstance(events[-1], PredictionResult)
    assert any(isinstance(e, Progress) and e.stage == "tiles" for e in events)
    result = events[-1]
    assert result.prediction.shape == (1, 1, 70, 90)
    assert result.prediction.dtype == np.float32
    assert np.isfinite(result.prediction).all()
    assert result.variance is None and result.model_id == "test-unet"


def test_onnx_runtime_and_torch_backends_agree(tmp_path, rng, monkeypatch):
    package = make_unet_package(tmp_path, depth=3, base=8)
    image = _image(rng.normal(0, 1, (1, 1, 96, 130)).astype(np.float32))
    fast = PredictionEngine(package, device="cpu")
    first = fast.predict(image).prediction
    assert fast._runner.backend == "onnxruntime"
    monkeypatch.setenv("LABELFREE_BACKEND", "torch")
    slow = PredictionEngine(package, device="cpu")
    second = slow.predict(image).prediction
    assert slow._runner.backend == "torch"
    np.testing.assert_allclose(first, second, atol=1e-4 * max(1.0, float(np.abs(second).max())))


def test_small_tiles_match_one_big_tile_closely(tmp_path, rng):
    engine = PredictionEngine(make_unet_package(tmp_path, depth=2, base=4), device="cpu")
    image = _image(rng.normal(0, 1, (1, 1, 150, 170)).astype(np.float32))
    whole = engine.predict(image, PredictSettings(tile_shape=(256, 256))).prediction
    tiled = engine.predict(image, PredictSettings(tile_shape=(64, 64))).prediction
    # depth-2 U-Net: receptive-field radius is below the 32-px halo, so tiles change nothing.
    np.testing.assert_allclose(tiled, whole, atol=1e-4 * float(np.abs(whole).max()))


def test_transmitted_channel_is_found_by_name(tmp_path, rng):
    engine = PredictionEngine(make_unet_package(tmp_path), device="cpu")
    data = np.stack([np.zeros((1, 40, 40)), rng.normal(0, 1, (1, 40, 40))]).astype(np.float32)
    by_name = engine.predict(_image(data, ["Hoechst", "Brightfield"])).prediction
    by_index = engine.predict(_image(data, ["Hoechst", "Brightfield"]), PredictSettings(channel=1)).prediction
    np.testing.assert_array_equal(by_name, by_index)
    with pytest.raises(ChannelError):
        engine.predict(_image(data, ["A", "B"]))


def test_zstack_is_fed_as_channels_to_a_z_as_channels_model(tmp_path, rng):
    engine = PredictionEngine(make_unet_package(tmp_path, in_channels=5, z_as_channels=True), device="cpu")
    result = engine.predict(_image(rng.normal(0, 1, (1, 5, 48, 48)).astype(np.float32)))
    assert result.prediction.shape == (1, 1, 48, 48)
    with pytest.raises(InputShapeError, match="single plane"):
        engine.predict(_image(rng.normal(0, 1, (1, 1, 48, 48)).astype(np.float32)))


def test_2d_model_predicts_each_plane_of_a_stack(tmp_path, rng):
    engine = PredictionEngine(make_unet_package(tmp_path), device="cpu")
    stack = rng.normal(0, 1, (1, 3, 32, 32)).astype(np.float32)
    result = engine.predict(_image(stack))
    assert result.prediction.shape == (1, 3, 32, 32)
    assert not np.allclose(result.prediction[:, 0], result.prediction[:, 1])


def test_3d_model_refuses_a_single_plane(tmp_path, rng):
    engine = PredictionEngine(make_unet_package(tmp_path, dims=3), device="cpu")
    ok = engine.predict(_image(rng.normal(0, 1, (1, 9, 20, 20)).astype(np.float32)))
    assert ok.prediction.shape == (1, 9, 20, 20)
    with pytest.raises(InputShapeError, match="3D model"):
        engine.predict(_image(rng.normal(0, 1, (1, 1, 20, 20)).astype(np.float32)))


@pytest.mark.parametrize("shape", [(1, 1, 40, 40), (1, 1, 40, 56)])
def test_tta_is_the_mean_and_variance_over_the_flipped_and_rotated_images(tmp_path, rng, shape):
    engine = PredictionEngine(make_unet_package(tmp_path), device="cpu")
    pixels = rng.normal(0, 1, shape).astype(np.float32)
    result = engine.predict(_image(pixels), PredictSettings(tta=True))
    views = []
    for k in range(4):
        for flip in (False, True):
            view = np.rot90(pixels, k, axes=(2, 3))
            view = view[..., ::-1] if flip else view
            out = engine.predict(_image(np.ascontiguousarray(view))).prediction
            out = out[..., ::-1] if flip else out
            views.append(np.rot90(out, -k, axes=(2, 3)))
    np.testing.assert_allclose(result.prediction, np.mean(views, axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(result.variance, np.var(views, axis=0), rtol=1e-3, atol=1e-5)
    assert result.variance.max() > 0, "a random network is not symmetric, so the views differ"


def test_diffusion_gives_mean_variance_previews_and_frames(tmp_path, rng):
    engine = PredictionEngine(make_diffusion_package(tmp_path), device="cpu")
    image = _image(rng.normal(0, 1, (1, 1, 40, 52)).astype(np.float32))
    events = list(engine.run(image, PredictSettings(samples=3, steps=4, frames=4, preview_interval_s=0.0)))
    result = events[-1]
    assert isinstance(result, PredictionResult)
    assert result.prediction.shape == (1, 1, 40, 52)
    assert result.variance.shape == (1, 1, 40, 52) and result.variance.max() > 0
    assert result.frames.shape == (4, 1, 1, 40, 52)
    previews = [e for e in events if isinstance(e, Preview)]
    assert {p.kind for p in previews} == {"x_t", "pred_x0"}
    assert previews[0].image.shape == (1, 1, 40, 52)
    assert result.settings["samples"] == 3 and result.settings["steps"] == 4


def test_diffusion_is_reproducible_for_a_seed(tmp_path, rng):
    engine = PredictionEngine(make_diffusion_package(tmp_path), device="cpu")
    image = _image(rng.normal(0, 1, (1, 1, 32, 32)).astype(np.float32))
    a = engine.predict(image, PredictSettings(samples=2, steps=3, sampler="ddpm", seed=7))
    b = engine.predict(image, PredictSettings(samples=2, steps=3, sampler="ddpm", seed=7))
    c = engine.predict(image, PredictSettings(samples=2, steps=3, sampler="ddpm", seed=8))
    np.testing.assert_array_equal(a.prediction, b.prediction)
    assert not np.array_equal(a.prediction, c.prediction)


def test_closing_the_run_stops_sampling_within_a_step(tmp_path, rng):
    engine = PredictionEngine(make_diffusion_package(tmp_path), device="cpu")
    image = _image(rng.normal(0, 1, (1, 1, 32, 32)).astype(np.float32))
    calls = 0
    network = None
    run = engine.run(image, PredictSettings(samples=2, steps=50))
    for event in run:
        if network is None and engine._runner is not None:
            network = engine._runner.network
            original = network.forward

            def counting(*args, **kwargs):
                nonlocal calls
                calls += 1
                return original(*args, **kwargs)

            network.forward = counting
        if isinstance(event, Progress) and event.stage == "sampling" and event.done == 3:
            break
    run.close()
    assert calls <= 4  # three steps ran (one call each: the image fits one tile), at most one more


def test_diffusion_with_one_covering_tile_equals_untiled_sampling(tmp_path, rng):
    """The engine's tiled model call, with a tile that covers the image, is the plain sampler."""
    import torch

    from labelfree_app.core.normalize import fit_normalizer
    from labelfree_app.models.diffusion.samplers import sample_loop
    from labelfree_app.models.diffusion.schedule import NoiseSchedule

    package = make_diffusion_package(tmp_path)
    engine = PredictionEngine(package, device="cpu")
    data = rng.normal(0, 1, (1, 1, 32, 48)).astype(np.float32)
    result = engine.predict(_image(data), PredictSettings(samples=1, steps=4, sampler="ddim", seed=3,
                                                          tile_shape=(64, 64)))
    network = package.build_network("cpu")
    cond = torch.from_numpy(fit_normalizer(data[0], "zscore").apply(data[0])[None])  # (1, 1, 32, 48)
    # the engine reflect-pads to the tile; do the same so the network sees identical pixels
    padded_cond = torch.nn.functional.pad(cond, (8, 8, 16, 16), mode="reflect")

    def model_fn(x_t, t):
        x_pad = torch.nn.functional.pad(x_t, (8, 8, 16, 16), mode="reflect")
        with torch.no_grad():
            out = network(x_pad, t.float(), padded_cond)
        return out[..., 16:48, 8:56]

    expected = sample_loop("ddim", model_fn, NoiseSchedule.create("cosine", 1000), (1, 1, 32, 48), steps=4,
                           prediction="v", generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(result.prediction[:, 0], expected[0].numpy(), atol=2e-4)
