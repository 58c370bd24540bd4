"""int8 is offered only where the model's int8 network was checked against float32 and passed; the
choice is recorded in the provenance, and asking for int8 where it failed is one sentence."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from labelfree_app.core.engine import PredictionEngine, PredictSettings
from labelfree_app.errors import SettingsError
from labelfree_app.io import Image
from labelfree_app.models import onnx_int8
from labelfree_app.models.onnx_backend import read_verified_cache, unet_cache_path
from labelfree_app.models.package import load_package
from tests.factories import make_unet_package

pytest.importorskip("onnxruntime")


def _record(package, *, passed: bool, tamper: bool = False):
    """Calibrate and quantize the package's network as scripts/check_int8.py does, and record a verdict."""
    PredictionEngine(package, device="cpu").predict(_image(), PredictSettings(precision="fp32"))  # caches fp32
    fp32 = read_verified_cache(unet_cache_path(package.manifest))
    rng = np.random.default_rng(0)
    ranges = onnx_int8.calibrate(fp32, [rng.normal(0, 1, (1, 1, 64, 64)).astype(np.float32) for _ in range(4)])
    network = onnx_int8.quantize(fp32, ranges)
    (package.path / onnx_int8.CALIBRATION_FILE).write_bytes(ranges + (b" " if tamper else b""))
    data = json.loads((package.path / "manifest.json").read_text())
    data["metrics"]["int8"] = {
        "passed": passed, "r_fp32_int8": 0.9995 if passed else 0.9981, "r_stain_fp32": 0.8, "r_stain_int8": 0.8,
        "held_out": "test", "calibration_sha256": hashlib.sha256(ranges).hexdigest(),
        "int8_sha256": hashlib.sha256(network).hexdigest()}
    (package.path / "manifest.json").write_text(json.dumps(data))
    return load_package(package.path)


def _image() -> Image:
    rng = np.random.default_rng(1)
    return Image.from_array(rng.normal(100, 10, (96, 80)).astype(np.float32), "YX")


def test_quantization_is_deterministic_so_a_rebuild_matches_the_checked_network(tmp_path):
    package = make_unet_package(tmp_path)
    PredictionEngine(package, device="cpu").predict(_image(), PredictSettings(precision="fp32"))
    fp32 = read_verified_cache(unet_cache_path(package.manifest))
    ranges = onnx_int8.calibrate(fp32, [np.ones((1, 1, 32, 32), np.float32)])
    assert onnx_int8.quantize(fp32, ranges) == onnx_int8.quantize(fp32, ranges)


def test_a_checked_model_runs_in_int8_by_default_and_says_so_in_the_provenance(tmp_path):
    package = _record(make_unet_package(tmp_path), passed=True)
    engine = PredictionEngine(package, device="cpu")
    auto = engine.predict(_image(), PredictSettings())
    fp32 = engine.predict(_image(), PredictSettings(precision="fp32"))
    assert auto.settings["precision"] == "int8" and fp32.settings["precision"] == "fp32"
    assert engine._runner.precision == "fp32"
    assert np.corrcoef(auto.prediction.ravel(), fp32.prediction.ravel())[0, 1] > 0.99
    assert not np.array_equal(auto.prediction, fp32.prediction)  # it really ran the int8 network
    assert onnx_int8.int8_cache_path(package.manifest).is_file()


def test_a_model_whose_check_failed_runs_fp32_and_int8_is_one_sentence(tmp_path):
    package = _record(make_unet_package(tmp_path), passed=False)
    engine = PredictionEngine(package, device="cpu")
    assert engine.predict(_image(), PredictSettings()).settings["precision"] == "fp32"
    with pytest.raises(SettingsError) as raised:
        engine.predict(_image(), PredictSettings(precision="int8"))
    text = str(raised.value)
    assert text.startswith("test-unet cannot run in int8: ") and "0.9981" in text and text.count(". ") == 0


@pytest.mark.parametrize("case", ["never checked", "calibration changed"])
def test_int8_is_not_offered_without_a_verdict_or_with_a_changed_calibration(tmp_path, case):
    package = make_unet_package(tmp_path)
    if case == "calibration changed":
        package = _record(package, passed=True, tamper=True)
    engine = PredictionEngine(package, device="cpu")
    assert engine.predict(_image(), PredictSettings()).settings["precision"] == "fp32"
    with pytest.raises(SettingsError, match="cannot run in int8"):
        engine.resolve(PredictSettings(precision="int8"))


def test_the_cli_refuses_int8_for_a_model_whose_check_failed(tmp_path, capsys):
    from labelfree_app.cli.main import main
    from labelfree_app.io import write_image

    package = _record(make_unet_package(tmp_path / "models"), passed=False)
    source = tmp_path / "in.tif"
    write_image(source, _image().data[0, 0], "YX")
    code = main(["predict", str(source), "-o", str(tmp_path / "out"), "--model", str(package.path),
                 "--precision", "int8", "-q"])
    assert code != 0 and "cannot run in int8" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.tif"))
