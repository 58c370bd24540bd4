"""Training records the profile of its inputs, so the trained model's predictions get a trust map."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from labelfree_app.core.trust import METHOD, InputProfile
from labelfree_app.training.input_profile import MAX_PLANES, InputSample, mosaic
from labelfree_app.training.loop import train

from .conftest import smooth_texture, tiny_config, write_pair


def test_a_trained_unet_records_its_inputs_and_its_predictions_get_a_trust_map(tmp_path: Path) -> None:
    from labelfree_app.core.engine import PredictionEngine
    from labelfree_app.io.image import Image
    from labelfree_app.models.package import load_package

    pair = write_pair(tmp_path / "data", "field", shape=(128, 128), seed=5)
    package = train(tiny_config(pair, tmp_path / "model", max_steps=2, val_every=0, checkpoint_every=0))
    trust = json.loads((package / "manifest.json").read_text())["trust"]
    assert trust["method"] == METHOD
    profile = InputProfile.from_dict(trust["input_profile"])
    engine = PredictionEngine(load_package(package), device="cpu")
    alike = smooth_texture((128, 128), 11).astype(np.float32)
    noise = np.random.default_rng(0).normal(size=(128, 128)).astype(np.float32)
    familiar = engine.predict(Image.from_array(alike[None, None], "CZYX")).trust_map
    strange = engine.predict(Image.from_array(noise[None, None], "CZYX")).trust_map
    assert familiar is not None and familiar.shape == (1, 1, 128, 128)
    assert float(familiar.mean()) > float(strange.mean()) + 0.2  # the model knows what it has seen
    assert profile.familiarity(np.zeros((64, 64), np.float32)).shape == (2, 2)


def test_a_trained_diffusion_model_records_its_inputs_too(tmp_path: Path) -> None:
    pair = write_pair(tmp_path / "data", "field", shape=(64, 64), seed=6)
    package = train(tiny_config(pair, tmp_path / "diffusion", model_type="diffusion", max_steps=1, val_every=0,
                                checkpoint_every=0, val_region="32:64,32:64"))
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["kind"] == "diffusion"
    InputProfile.from_dict(manifest["trust"]["input_profile"])


def test_the_sample_spreads_over_the_pairs_and_skips_3d_models() -> None:
    sample = InputSample(100, dims=2)
    assert len(sample.chosen) == MAX_PLANES and {0, 99} <= sample.chosen
    assert InputSample(3, dims=2).chosen == {0, 1, 2}
    volume = InputSample(5, dims=3)
    volume.add(0, np.ones((1, 32, 32), np.float32))
    assert volume.trust_block() is None


def test_channels_are_averaged_and_a_large_plane_is_sampled_all_over() -> None:
    sample = InputSample(1, dims=2)
    sample.add(0, np.stack([np.zeros((64, 64)), np.full((64, 64), 2.0)]).astype(np.float32))
    assert sample.planes[0].shape == (64, 64) and np.all(sample.planes[0] == 1.0)
    plane = np.arange(2048 * 1024, dtype=np.float32).reshape(2048, 1024)
    tiles = mosaic(plane)
    assert tiles.shape == (512, 512)
    assert tiles[0, 0] == plane[0, 0] and tiles[-1, -1] == plane[-1, -1]  # corners of the plane are in it


def test_nan_pixels_in_a_training_input_do_not_spoil_the_profile() -> None:
    sample = InputSample(1, dims=2)
    plane = smooth_texture((64, 64), 2).astype(np.float32)
    plane = (plane - plane.mean()) / plane.std()
    plane[:8, :8] = np.nan  # masked pixels
    sample.add(0, plane[None])
    block = sample.trust_block()
    assert block is not None and InputProfile.from_dict(block["input_profile"])  # every number finite
    assert sample.planes == []  # the kept planes are freed
