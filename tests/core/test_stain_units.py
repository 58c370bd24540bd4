"""Predictions in the stain's units: the manifest's recorded target intensities map z-scores back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from labelfree_app.cli.main import main
from labelfree_app.core.engine import PredictionEngine
from labelfree_app.core.settings import PredictSettings
from labelfree_app.errors import SettingsError
from labelfree_app.io import Image, read_provenance
from labelfree_app.models.package import load_package, save_package
from labelfree_app.training.stain_units import target_units
from labelfree_app.training.config import PairSpec
from tests.factories import make_unet_package

MEAN, STD = 900.0, 250.0


def stain_package(folder: Path, dtype: str = "uint16"):
    plain = make_unet_package(folder / "plain")
    manifest = plain.manifest.to_dict()
    manifest["id"] = "stain-unet"
    manifest["normalization"]["output"] = {"method": "zscore", "params": {"mean": MEAN, "std": STD}}
    manifest["output"]["dtype"] = dtype
    return plain, load_package(save_package(folder / "stain-unet", manifest, plain.state_dict()))


def field() -> Image:
    data = np.random.default_rng(0).normal(500, 50, (1, 1, 64, 64)).astype(np.float32)
    return Image(data=data, axes="CZYX", channel_names=("BF",), pixel_size_um={}, path=None, metadata={})


def test_stain_units_are_the_z_scores_mapped_back_and_variance_scales_with_them(tmp_path: Path) -> None:
    plain, stain = stain_package(tmp_path)
    z = PredictionEngine(plain, device="cpu").predict(field(), PredictSettings(tta=True))
    engine = PredictionEngine(stain, device="cpu")
    out = engine.predict(field(), PredictSettings(tta=True))
    np.testing.assert_allclose(out.prediction, z.prediction * STD + MEAN, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(out.variance, z.variance * STD**2, rtol=1e-4, atol=1e-3)
    assert out.settings["units"] == "stain" and out.settings["dtype"] == "uint16"
    again = engine.predict(field(), PredictSettings(units="zscore", tta=True))
    np.testing.assert_allclose(again.prediction, z.prediction, atol=1e-6)
    assert again.settings["dtype"] == "float32"


def test_units_the_model_cannot_give_are_refused_in_a_sentence(tmp_path: Path) -> None:
    plain, stain = stain_package(tmp_path)
    with pytest.raises(SettingsError, match="does not know its stain's intensity units"):
        PredictionEngine(plain, device="cpu").predict(field(), PredictSettings(units="stain"))
    with pytest.raises(SettingsError, match="needs stain units"):
        PredictionEngine(stain, device="cpu").predict(field(), PredictSettings(units="zscore", dtype="uint16"))
    assert PredictionEngine(plain, device="cpu").predict(field()).settings["units"] == "zscore"


def test_predict_writes_16_bit_stain_units_and_says_so(tmp_path: Path) -> None:
    _, stain = stain_package(tmp_path)
    source = tmp_path / "bf.tif"
    tifffile.imwrite(source, field().data[0, 0])
    assert main(["predict", str(source), "-o", str(tmp_path / "out"), "-q", "--model", str(stain.path)]) == 0
    written = tmp_path / "out" / "bf__stain-unet.ome.tif"
    pixels = tifffile.imread(written)
    assert pixels.dtype == np.uint16 and 0 < pixels.mean() < 65535
    settings = read_provenance(written)["settings"]
    assert settings["units"] == "stain" and settings["dtype"] == "uint16"
    assert main(["predict", str(source), "-o", str(tmp_path / "z"), "-q", "--model", str(stain.path),
                 "--units", "zscore"]) == 0
    z = tifffile.imread(tmp_path / "z" / "bf__stain-unet.ome.tif")
    assert z.dtype == np.float32
    np.testing.assert_allclose(pixels, np.clip(np.rint(z * STD + MEAN), 0, 65535), atol=1.0)


def test_training_records_the_median_target_intensities_and_type(tmp_path: Path) -> None:
    pairs = []
    for k, (mean, std) in enumerate([(100, 10), (200, 30), (400, 20)]):
        target = np.random.default_rng(k).normal(mean, std, (32, 32)).clip(0).astype(np.uint16)
        tifffile.imwrite(tmp_path / f"t{k}.tif", target)
        tifffile.imwrite(tmp_path / f"i{k}.tif", target.astype(np.float32))
        pairs.append(PairSpec(input=str(tmp_path / f"i{k}.tif"), target=str(tmp_path / f"t{k}.tif")))
    units = target_units(pairs)
    assert units["dtype"] == "uint16" and units["images"] == 3
    assert units["mean"] == pytest.approx(200, abs=5) and units["std"] == pytest.approx(20, abs=2)  # the medians
