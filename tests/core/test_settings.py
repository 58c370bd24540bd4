"""Prediction settings: one table, resolve() against a manifest, one channel parser, the device honoured."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest

from labelfree_app.core.engine import PredictionEngine
from labelfree_app.core.engine import PredictSettings as FromEngine
from labelfree_app.core.settings import TABLE, PredictSettings, is_diffusion
from labelfree_app.errors import ChannelError, LabelFreeError, SettingsError
from labelfree_app.io import Image
from labelfree_app.io.channels import parse_channel, resolve_channel_index
from tests.factories import make_diffusion_package, make_unet_package

ROOT = Path(__file__).resolve().parents[2] / "labelfree_app"


def _parser() -> argparse.ArgumentParser:
    from labelfree_app.cli.options import add_predict_options as _add_predict_options

    parser = argparse.ArgumentParser()
    _add_predict_options(parser)
    return parser


def _one_sentence(err: LabelFreeError) -> str:
    text = str(err)
    assert text.endswith(".") and "\n" not in text and "Traceback" not in text
    return text


def test_engine_still_exports_the_same_class():
    assert FromEngine is PredictSettings


def test_resolve_fills_the_manifest_defaults_for_a_diffusion_model(tmp_path):
    manifest = make_diffusion_package(tmp_path, samples=5, steps=7, sampler="dpmpp2m").manifest
    resolved = PredictSettings().resolve(manifest)
    assert (resolved["samples"], resolved["steps"], resolved["sampler"], resolved["eta"]) == (5, 7, "dpmpp2m", 0.0)
    assert resolved["tile"] == tuple(manifest.tiling.tile_shape) and resolved["tile_auto"]
    assert resolved["halo"] == tuple(manifest.tiling.halo) and resolved["batch_size"] == 1
    assert resolved["tta"] is False and resolved["frames"] == 0 and resolved["device"] == "auto"
    mine = PredictSettings(samples=2, steps=3, sampler="ddpm", eta=0.5, tile_shape=(64, 64), tta=True).resolve(manifest)
    assert (mine["samples"], mine["steps"], mine["sampler"], mine["eta"]) == (2, 3, "ddpm", 0.5)
    assert mine["tile"] == (64, 64) and not mine["tile_auto"]
    assert mine["tta"] is False  # diffusion has its own variance: TTA does not apply


def test_resolve_uses_the_table_when_a_manifest_leaves_a_key_out():
    manifest = {"kind": "diffusion", "dims": 2, "diffusion": {}}
    resolved = PredictSettings().resolve(manifest)
    assert resolved["samples"] == TABLE["samples"].default
    assert resolved["steps"] == TABLE["steps"].default and resolved["sampler"] == TABLE["sampler"].default
    assert resolved["tile"] == (TABLE["tile"].default,) * 2 and resolved["halo"] == (TABLE["halo"].default,) * 2


def test_a_unet_resolves_without_diffusion_values(tmp_path):
    resolved = PredictSettings(samples=4, frames=6, tta=True).resolve(make_unet_package(tmp_path).manifest)
    assert resolved["samples"] is None and resolved["sampler"] is None
    assert resolved["frames"] == 0 and resolved["tta"] is True


@pytest.mark.parametrize(("values", "words"), [
    ({"samples": -1}, "number of diffusion samples must be at least 1"),
    ({"samples": 0}, "at least 1"),
    ({"samples": 2.5}, "whole number"),
    ({"steps": 0}, "sampling steps"),
    ({"eta": 1.5}, "DDIM eta"),
    ({"sampler": "euler"}, "ddpm, ddim, dpmpp2m"),
    ({"frames": -2}, "denoising frames"),
    ({"batch_size": 0}, "batch size"),
    ({"tile_shape": (8, 8)}, "tile shape"),
    ({"tile_shape": (64,)}, "tile shape"),
    ({"seed": -1}, "seed"),
    ({"device": ""}, "device"),
])
def test_bad_values_are_one_sentence(values, words):
    with pytest.raises(SettingsError) as caught:
        PredictSettings.from_mapping(values)
    assert words in _one_sentence(caught.value)


def test_steps_beyond_the_models_training_are_refused(tmp_path):
    manifest = {"kind": "diffusion", "dims": 2, "diffusion": {"train_steps": 50}}
    with pytest.raises(SettingsError, match="at most 50 steps"):
        PredictSettings(steps=60).resolve(manifest)
    with pytest.raises(SettingsError, match="2D, so the tile shape needs 2 sizes"):
        PredictSettings(tile_shape=(4, 64, 64)).resolve({"kind": "unet", "dims": 2})


def test_cli_refuses_bad_tile_and_negative_samples_with_a_sentence():
    from labelfree_app.cli.options import predict_settings as _settings

    for argv in (["--tile", "0", "64"], ["--samples", "-3"], ["--tile", "64", "64", "64", "64"]):
        with pytest.raises(SettingsError) as caught:
            _settings(_parser().parse_args(argv))
        _one_sentence(caught.value)


def test_cli_and_gui_read_the_same_defaults_and_sampler_list():
    from labelfree_app.gui.predict import run_controls

    args = _parser().parse_args(["--save-steps"])
    assert args.save_steps == run_controls.DEFAULT_FRAMES == TABLE["frames"].asked
    assert _parser().parse_args([]).save_steps == TABLE["frames"].default
    sampler = next(a for a in _parser()._actions if a.dest == "sampler")
    assert tuple(sampler.choices) == run_controls.SAMPLERS == TABLE["sampler"].choices
    from labelfree_app.models import manifest
    from labelfree_app.models.diffusion import samplers

    assert manifest.SAMPLERS is samplers.SAMPLERS is TABLE["sampler"].choices


def test_each_default_is_written_once():
    """The prediction defaults live in the manifest's dataclass and ``core/settings.py`` only."""
    sources = {p: p.read_text() for p in ROOT.rglob("*.py")}
    samplers = [p for p, text in sources.items() if re.search(r"""["']ddim["']\s*,\s*["']dpmpp2m["']""", text)]
    assert [p.name for p in samplers] == ["manifest.py"]
    eights = [p for p, text in sources.items() if re.search(r"\bsamples\w*(: int)? ?=.*\b8\b", text)]
    assert [p.name for p in eights] == ["manifest.py"]
    digit_channels = [p for p, text in sources.items() if 'lstrip("-").isdigit()' in text]
    assert not any(p.parent.name == "cli" or p.name == "run_controls.py" for p in digit_channels)


def test_parse_channel_keeps_names_and_digits_find_names_first():
    assert parse_channel(None) is None and parse_channel("  ") is None
    assert parse_channel(2) == 2 and parse_channel(" GFP ") == "GFP" and parse_channel("1") == "1"
    names = ["BF", "1", "Hoechst"]
    assert resolve_channel_index(names, parse_channel("1")) == 1  # the channel named "1"
    assert resolve_channel_index(names, parse_channel("2")) == 2  # no such name: an index
    with pytest.raises(ChannelError, match="has no channel -1"):
        resolve_channel_index(names, parse_channel("-1"))
    with pytest.raises(ChannelError):
        parse_channel(True)
    from labelfree_app.cli.options import predict_settings as _settings

    assert _settings(_parser().parse_args(["--channel", "1"])).channel == "1"


def test_is_diffusion_reads_any_form():
    assert is_diffusion("diffusion") and is_diffusion({"kind": "diffusion"})
    assert not is_diffusion(None) and not is_diffusion({"kind": "unet"})
    assert is_diffusion(argparse.Namespace(kind="diffusion"))


def test_engine_records_the_resolved_values(tmp_path):
    engine = PredictionEngine(make_diffusion_package(tmp_path, samples=2, steps=3), device="cpu")
    image = Image.from_array(np.random.default_rng(0).normal(0, 1, (1, 1, 32, 32)).astype(np.float32), "CZYX")
    result = engine.predict(image, PredictSettings(frames=2))
    assert result.settings["samples"] == 2 and result.settings["steps"] == 3
    assert result.settings["sampler"] == TABLE["sampler"].default and result.settings["device"] == "cpu"
    assert result.settings["frames"] == 2 and len(result.settings["tile"]) == 2 and "halo" in result.settings


def test_a_settings_device_other_than_the_engines_is_refused(tmp_path):
    engine = PredictionEngine(make_unet_package(tmp_path), device="cpu")
    image = Image.from_array(np.zeros((1, 1, 32, 32), np.float32), "CZYX")
    with pytest.raises(SettingsError) as caught:
        engine.predict(image, PredictSettings(device="cuda"))
    assert "loaded on cpu" in _one_sentence(caught.value)
    with pytest.raises(SettingsError, match="must be auto, cpu"):
        engine.predict(image, PredictSettings(device="tpu!"))
    assert engine.predict(image, PredictSettings(device="cpu")).settings["device"] == "cpu"
    assert engine.predict(image, PredictSettings(device="auto")).prediction.shape == (1, 1, 32, 32)


def test_the_diffusion_runner_defaults_to_the_manifests_prediction_type(tmp_path):
    import torch

    from labelfree_app.core.diffusion_runner import DiffusionRunner
    from labelfree_app.models.manifest import DiffusionSettings

    package = make_diffusion_package(tmp_path)
    manifest = package.manifest.to_dict()
    manifest["diffusion"].pop("prediction")
    runner = DiffusionRunner(package, manifest, torch.device("cpu"))
    assert runner.prediction == DiffusionSettings().prediction == "v"
