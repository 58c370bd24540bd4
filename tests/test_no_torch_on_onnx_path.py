"""With a U-Net's verified ONNX export cached, `predict`, `batch` and the window's first prediction run
on ONNX Runtime without importing torch (its import alone takes seconds); without the export they
still work, on torch, and build it. Each run is a fresh process that reports whether torch was loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from labelfree_app import paths
from labelfree_app.io import read_image, read_provenance, write_image
from labelfree_app.models.registry import ModelRegistry
from tests.factories import make_unet_package

pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parent.parent
MARK = "TORCH_LOADED="
CLI = ("import sys\nfrom labelfree_app.cli.main import main\nrc = main(sys.argv[1:])\n"
       f"print({MARK!r} + str('torch' in sys.modules))\nsys.exit(rc)\n")
WINDOW = ("import sys\nfrom pathlib import Path\nfrom labelfree_app.gui.backend import CoreBackend\n"
          "backend = CoreBackend()\nimage = backend.read_image(Path(sys.argv[1]))\n"
          "result = list(backend.run(image, sys.argv[2], {}))[-1]\nprint('backend=' + result.backend)\n"
          f"print({MARK!r} + str('torch' in sys.modules))\n")


@pytest.fixture(autouse=True)
def _onnx_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABELFREE_BACKEND", raising=False)


def _python(code: str, *args: str) -> tuple[str, bool]:
    """Run ``code`` in a fresh interpreter (LABELFREE_HOME inherited); its output and whether torch was loaded."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    marks = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    assert marks, done.stdout + done.stderr
    return done.stdout, marks[-1] == MARK + "True"


def _cli(*args: str) -> bool:
    """Run `labelfree ARGS` in a fresh process; whether it imported torch."""
    return _python(CLI, *args)[1]


def _onnx_cache() -> list[Path]:
    return sorted((paths.user_cache_dir() / "onnx").glob("*.onnx"))


@pytest.fixture()
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.tif", "b.tif"):
        write_image(folder / name, rng.normal(100, 10, (1, 1, 48, 64)).astype(np.float32), "CZYX")
    return folder


@pytest.fixture()
def package_path(tmp_path: Path) -> str:
    return str(make_unet_package(tmp_path / "models").path)


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(read_image(path).data)


def test_predict_with_the_cached_export_never_imports_torch(tmp_path, inputs, package_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert _cli("predict", str(inputs / "a.tif"), "-o", str(first), "--model", package_path, "-q"), \
        "the first run builds the export, with torch"
    assert len(_onnx_cache()) == 1
    assert not _cli("predict", str(inputs / "a.tif"), "-o", str(second), "--model", package_path, "-q")
    name = "a__test-unet.ome.tif"
    np.testing.assert_array_equal(_pixels(second / name), _pixels(first / name))
    assert read_provenance(second / name)["backend"] == "onnxruntime"


def test_batch_with_the_cached_export_never_imports_torch(tmp_path, inputs, package_path):
    _cli("predict", str(inputs / "a.tif"), "-o", str(tmp_path / "warm"), "--model", package_path, "-q")
    out = tmp_path / "batch"
    assert not _cli("batch", str(inputs), "-o", str(out), "--model", package_path, "-q")
    assert sorted(p.name for p in out.glob("*.ome.tif")) == ["a__test-unet.ome.tif", "b__test-unet.ome.tif"]


def test_the_windows_first_prediction_never_imports_torch(tmp_path, inputs, package_path):
    model_id = ModelRegistry().install(Path(package_path)).id
    _cli("predict", str(inputs / "a.tif"), "-o", str(tmp_path / "warm"), "--model", model_id, "-q")
    output, torch_loaded = _python(WINDOW, str(inputs / "a.tif"), model_id)
    assert "backend=onnxruntime" in output and not torch_loaded


def test_without_the_export_the_prediction_runs_on_torch_and_builds_it(tmp_path, inputs, package_path):
    _cli("predict", str(inputs / "a.tif"), "-o", str(tmp_path / "warm"), "--model", package_path, "-q")
    for cached in _onnx_cache():
        cached.unlink()
    out = tmp_path / "rebuilt"
    assert _cli("predict", str(inputs / "a.tif"), "-o", str(out), "--model", package_path, "-q")
    assert len(_onnx_cache()) == 1, "torch exported the network again"
    np.testing.assert_array_equal(_pixels(out / "a__test-unet.ome.tif"),
                                  _pixels(tmp_path / "warm" / "a__test-unet.ome.tif"))


def test_a_damaged_export_is_not_run_and_torch_rebuilds_it(tmp_path, inputs, package_path):
    _cli("predict", str(inputs / "a.tif"), "-o", str(tmp_path / "warm"), "--model", package_path, "-q")
    (cached,) = _onnx_cache()
    cached.write_bytes(cached.read_bytes()[:100])
    assert _cli("predict", str(inputs / "a.tif"), "-o", str(tmp_path / "again"), "--model", package_path, "-q")
    assert not _cli("predict", str(inputs / "a.tif"), "-o", str(tmp_path / "third"), "--model", package_path, "-q")


def test_the_torch_backend_asked_for_imports_torch(tmp_path, inputs, package_path, monkeypatch):
    _cli("predict", str(inputs / "a.tif"), "-o", str(tmp_path / "warm"), "--model", package_path, "-q")
    monkeypatch.setenv("LABELFREE_BACKEND", "torch")
    assert _cli("predict", str(inputs / "a.tif"), "-o", str(tmp_path / "torch"), "--model", package_path, "-q")
    assert read_provenance(tmp_path / "torch" / "a__test-unet.ome.tif")["backend"] == "torch"
