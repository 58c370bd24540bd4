"""Bad model files through the real command line: an exit code, no traceback, one sentence naming the file.

Each case runs ``python -m labelfree_app.cli`` in a subprocess with LABELFREE_HOME pointing at a temp
folder, as a user would meet it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from labelfree_app.io import read_image, read_provenance, write_image
from labelfree_app.models.package import MANIFEST_FILE
from tests.models.test_registry import make_package

REPO = Path(__file__).resolve().parents[2]


def _cli(home: Path, *args: str | Path, backend: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "LABELFREE_HOME": str(home), "PYTHONPATH": str(REPO)}
    env.pop("LABELFREE_BACKEND", None)
    if backend:
        env["LABELFREE_BACKEND"] = backend
    return subprocess.run([sys.executable, "-m", "labelfree_app.cli", *map(str, args)], cwd=home, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _one_sentence_error(run: subprocess.CompletedProcess, path: Path, *phrases: str) -> str:
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    line = lines[0]
    assert line.startswith("error: ") and line.endswith(".") and str(path) in line, line
    for phrase in phrases:
        assert phrase in line, line
    return line


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "data" / "models").mkdir(parents=True)
    return home


def _models_dir(home: Path) -> Path:
    return home / "data" / "models"


def _plant_bad_packages(home: Path, tmp_path: Path) -> dict[str, Path]:
    models = _models_dir(home)
    nested = models / "nested"
    nested.mkdir()
    (nested / MANIFEST_FILE).write_text("[" * 200000 + "]" * 200000)
    big = models / "big"
    big.mkdir()
    with open(big / MANIFEST_FILE, "wb") as handle:
        handle.truncate(200 * 1024 * 1024)  # sparse
    huge = make_package(tmp_path / "src", "huge-net")
    data = json.loads((huge / MANIFEST_FILE).read_text())
    data["architecture"]["kwargs"]["base_channels"] = 100000
    (huge / MANIFEST_FILE).write_text(json.dumps(data))
    huge = huge.rename(models / "huge-net")
    return {"nested": nested / MANIFEST_FILE, "big": big / MANIFEST_FILE, "huge": huge / MANIFEST_FILE}


def test_models_list_survives_bad_packages_and_names_each(home, tmp_path):
    bad = _plant_bad_packages(home, tmp_path)
    make_package(_models_dir(home), "tiny-good")
    run = _cli(home, "models", "list")
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert "tiny-good" in run.stdout and "lf-nuclei-2d" in run.stdout
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3, run.stderr
    for manifest in bad.values():
        (line,) = [w for w in warnings if str(manifest.parent) in w]
        assert line.endswith("."), line
    (huge_line,) = [w for w in warnings if "huge-net" in w]
    assert "'architecture.kwargs.base_channels'" in huge_line and "between 1 and 512" in huge_line
    (big_line,) = [w for w in warnings if "/big" in w]
    assert "larger than the 1 MB" in big_line
    (nested_line,) = [w for w in warnings if "/nested" in w]
    assert "nested" in nested_line and "RecursionError" not in nested_line


def test_predicting_with_a_good_model_works_beside_bad_packages(home, tmp_path):
    _plant_bad_packages(home, tmp_path)
    make_package(_models_dir(home), "tiny-good")
    image = tmp_path / "bf.tif"
    write_image(image, np.random.default_rng(0).normal(100, 10, (1, 1, 48, 48)).astype(np.float32), axes="CZYX")
    run = _cli(home, "predict", image, "-o", tmp_path / "out", "--model", "tiny-good", "-q")
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert (tmp_path / "out" / "bf__tiny-good.ome.tif").is_file()


def test_installing_an_absurd_network_is_one_sentence(home, tmp_path):
    package = make_package(tmp_path / "src", "absurd")
    manifest = package / MANIFEST_FILE
    data = json.loads(manifest.read_text())
    data["architecture"]["kwargs"]["base_channels"] = 100000
    manifest.write_text(json.dumps(data))
    run = _cli(home, "models", "install", package)
    _one_sentence_error(run, manifest, "'architecture.kwargs.base_channels'", "between 1 and 512")
    assert not any(_models_dir(home).iterdir())


def _fnet_text(path: Path) -> None:
    path.write_text("hello world\nthis is a text file\n")


def _fnet_random(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(3000))


def _fnet_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("foo.txt", "hi")


@pytest.mark.parametrize(
    ("name", "write", "phrase"),
    [
        ("text.p", _fnet_text, "is not a PyTorch checkpoint"),
        ("empty.p", lambda p: p.write_bytes(b""), "is empty"),
        ("random.p", _fnet_random, "fnet"),
        ("archive.zip", _fnet_zip, "is a zip file but not a PyTorch checkpoint"),
    ],
)
def test_import_fnet_of_a_file_that_is_no_fnet_model_is_one_sentence(home, tmp_path, name, write, phrase):
    path = tmp_path / name
    write(path)
    run = _cli(home, "models", "import-fnet", path, "--out", tmp_path / "pkg", "--id", "x", "--target", "DNA")
    _one_sentence_error(run, path, phrase)
    assert not (tmp_path / "pkg").exists()


def _tamper_onnx(cache: Path) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(cache))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    array = numpy_helper.to_array(init).copy()
    array.flat[:] += 3.0
    init.CopyFrom(numpy_helper.from_array(array, init.name))
    cache.write_bytes(model.SerializeToString())


@pytest.mark.parametrize("damage", ["tampered", "truncated"])
def test_a_damaged_onnx_cache_is_rebuilt_and_the_prediction_is_unchanged(home, tmp_path, damage):
    pytest.importorskip("onnxruntime")
    make_package(_models_dir(home), "tiny-good")
    image = tmp_path / "bf.tif"
    write_image(image, np.random.default_rng(0).normal(100, 10, (1, 1, 48, 48)).astype(np.float32), axes="CZYX")
    first = _cli(home, "predict", image, "-o", tmp_path / "first", "--model", "tiny-good", "-q")
    assert first.returncode == 0, first.stderr
    (cache,) = (home / "cache" / "onnx").glob("*.onnx")
    clean = cache.read_bytes()
    if damage == "tampered":
        _tamper_onnx(cache)
    else:
        cache.write_bytes(clean[: len(clean) // 3])
    second = _cli(home, "predict", image, "-o", tmp_path / "second", "--model", "tiny-good", "-q")
    assert second.returncode == 0, second.stderr
    assert "Traceback" not in second.stderr
    # an internal cache costs time, not the user's attention (random noise is rightly not trustworthy)…
    assert not [line for line in second.stderr.splitlines()
                if line.strip() and not line.startswith("warning: bf.tif: the prediction is not trustworthy")]
    warning = (home / "logs" / "labelfree.log").read_text()  # …and is written down in the log
    assert str(cache) in warning and "rebuilt from the verified weights" in warning
    a, b = (read_image(tmp_path / d / "bf__tiny-good.ome.tif").data for d in ("first", "second"))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert cache.read_bytes() == clean
    assert read_provenance(tmp_path / "second" / "bf__tiny-good.ome.tif")["backend"] == "onnxruntime"
