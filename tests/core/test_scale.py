"""The scale a prediction runs at: the model's pixel size where both are known, a searched one where not."""

from __future__ import annotations

import numpy as np
import pytest

from labelfree_app.batch.process import STREAM_MIN_PIXELS, streams
from labelfree_app.core import scale
from labelfree_app.core.engine import PredictionEngine
from labelfree_app.core.settings import PredictSettings
from labelfree_app.errors import SettingsError
from labelfree_app.io.image import Image
from tests.factories import make_unet_package


def _image(shape: tuple[int, int], pixel_um: float | None = None, seed: int = 0) -> Image:
    data = np.random.default_rng(seed).random((1, 1, *shape), dtype=np.float32)
    return Image(data, "CZYX", ("BF",), {"X": pixel_um, "Y": pixel_um} if pixel_um else {})


@pytest.fixture()
def model_at_half_micron(tmp_path):
    return make_unet_package(tmp_path, training={"settings": {"pixel_size_um": 0.5}})


def test_an_image_whose_file_states_its_pixel_size_is_resampled_to_the_models_and_back(model_at_half_micron):
    engine = PredictionEngine(model_at_half_micron, device="cpu")
    result = engine.predict(_image((96, 80), pixel_um=1.0))
    assert result.prediction.shape[-2:] == (96, 80)
    assert result.settings["scale"] == {"mode": "pixel-size", "factor": 2.0, "how": "pixel size"}
    assert any("1 → 0.5 µm" in note for note in result.notes)
    plain = engine.predict(_image((96, 80), pixel_um=1.0), PredictSettings(scale="off"))
    assert plain.settings["scale"]["factor"] == 1.0
    assert not np.allclose(plain.prediction, result.prediction)


def test_a_typed_pixel_size_stands_in_for_one_the_file_lacks(model_at_half_micron):
    engine = PredictionEngine(model_at_half_micron, device="cpu")
    unknown = engine.predict(_image((64, 64)))
    typed = engine.predict(_image((64, 64)), PredictSettings(pixel_size_um=0.25))
    assert unknown.settings["scale"]["factor"] == 1.0
    assert typed.settings["scale"]["factor"] == 0.5 and typed.prediction.shape[-2:] == (64, 64)


def test_a_pixel_size_far_from_the_models_is_one_sentence(model_at_half_micron):
    engine = PredictionEngine(model_at_half_micron, device="cpu")
    with pytest.raises(SettingsError, match="too far to resample"):
        engine.predict(_image((64, 64)), PredictSettings(pixel_size_um=5.0))
    with pytest.raises(SettingsError, match="pixel size in µm"):
        PredictSettings(pixel_size_um=-1.0)


def test_search_keeps_the_factor_at_which_the_prediction_looks_most_calibrated():
    def predict(crop: np.ndarray) -> np.ndarray:  # sharpest (spread near 1, mean 0) at 0.5x: 192 pixels
        spread = np.exp(-abs(np.log(crop.shape[-1] / 192)))
        return np.random.default_rng(1).standard_normal(crop.shape).astype(np.float32) * spread

    choice = scale.search(np.zeros((500, 600), np.float32), predict)
    assert choice.factor == 0.5 and choice.how == "search"
    assert max(choice.scores, key=choice.scores.get) == 0.5 and "0.50×" in choice.note


def test_search_runs_through_the_engine_and_the_output_keeps_the_input_grid(tmp_path):
    engine = PredictionEngine(make_unet_package(tmp_path), device="cpu")
    result = engine.predict(_image((120, 100)), PredictSettings(scale="search"))
    chosen = result.settings["scale"]
    assert chosen["mode"] == "search" and chosen["how"] == "search"
    assert set(chosen["search"]) == {f"{f:g}" for f in scale.SEARCH_FACTORS}
    best = max(chosen["search"].values())
    assert chosen["search"][f"{chosen['factor']:g}"] == best  # the highest score, the factor nearest 1 of ties
    assert all(abs(np.log(chosen["factor"])) <= abs(np.log(float(f))) + 1e-9
               for f, v in chosen["search"].items() if v == best)
    assert result.prediction.shape[-2:] == (120, 100)


def test_a_diffusion_or_3d_model_is_not_searched(tmp_path):
    engine = PredictionEngine(make_unet_package(tmp_path, dims=3), device="cpu")
    data = np.random.default_rng(0).random((1, 8, 48, 48), dtype=np.float32)
    result = engine.predict(Image(data, "CZYX", ("BF",)), PredictSettings(scale="search"))
    assert result.settings["scale"]["factor"] == 1.0 and result.settings["scale"]["how"] == "none"


def test_an_input_to_be_resampled_streams_only_when_it_is_much_larger(model_at_half_micron):
    engine = PredictionEngine(model_at_half_micron, device="cpu")
    side = int(np.sqrt(STREAM_MIN_PIXELS)) + 64

    class Big:  # the shape is all streams() looks at
        data = np.broadcast_to(np.float32(0), (1, 1, side, side))
        n_channels = 1
        pixel_size_um = {"X": 1.0}

    assert streams(engine, Big(), settings=PredictSettings(scale="off"))
    assert not streams(engine, Big(), settings=PredictSettings())
    assert not streams(engine, Big(), settings=PredictSettings(scale="search"))


def test_the_command_line_takes_the_scale_and_records_it(tmp_path, model_at_half_micron, capsys):
    from labelfree_app.cli.main import main
    from labelfree_app.io import read_provenance, write_image

    source = tmp_path / "cells.tif"
    write_image(source, np.random.default_rng(0).random((1, 1, 64, 72), dtype=np.float32), "CZYX")
    out = tmp_path / "out"
    assert main(["predict", str(source), "-o", str(out), "-m", str(model_at_half_micron.path), "--pixel-size", "1",
                 "-q"]) == 0
    written = out / f"cells__{model_at_half_micron.manifest.to_dict()['id']}.ome.tif"
    assert read_provenance(written)["settings"]["scale"]["factor"] == 2.0
    assert main(["predict", str(source), "-o", str(out), "-m", str(model_at_half_micron.path), "--pixel-size",
                 "-1"]) == 1
    assert [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")] == [
        "error: The pixel size in µm must be at least 0.001 and at most 1000, not -1.0."]
