"""The cached ONNX export is bound to the verified weights: a changed, cut or unrecorded cache file
is deleted and rebuilt, never run; the backend that ran is recorded in the provenance."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from labelfree_app import paths
from labelfree_app.core.engine import PredictionEngine
from labelfree_app.export import output_paths, provenance, write_result
from labelfree_app.io import Image, read_provenance
from labelfree_app.models.onnx_backend import CHECKSUM_SUFFIX
from labelfree_app.models.package import sha256_of_file
from labelfree_app.core.unet_runner import UNetPredictor
from tests.factories import make_unet_package

pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def _onnx_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABELFREE_BACKEND", raising=False)


def _batch() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((2, 1, 32, 48)).astype(np.float32)


def _cached_files() -> list[Path]:
    return sorted((paths.user_cache_dir() / "onnx").glob("*.onnx"))


def _clean_run(package) -> tuple[np.ndarray, Path]:
    predictor = UNetPredictor(package, device="cpu")
    assert predictor.backend == "onnxruntime"
    expected = predictor.predict(_batch())
    (cache,) = _cached_files()
    return expected, cache


def test_the_cache_is_written_with_its_checksum(tmp_path):
    _, cache = _clean_run(make_unet_package(tmp_path))
    record = cache.with_name(cache.name + CHECKSUM_SUFFIX)
    assert record.read_text().strip() == sha256_of_file(cache)


def _tamper(cache: Path) -> None:
    """Change one weight of the exported graph: still a valid ONNX file, but another network."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(cache))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    array = numpy_helper.to_array(init).copy()
    array.flat[0] += 5.0
    init.CopyFrom(numpy_helper.from_array(array, init.name))
    cache.write_bytes(model.SerializeToString())


def test_a_tampered_cache_is_rebuilt_and_the_prediction_is_the_clean_one(tmp_path, caplog):
    package = make_unet_package(tmp_path)
    expected, cache = _clean_run(package)
    clean_bytes = cache.read_bytes()
    _tamper(cache)
    assert cache.read_bytes() != clean_bytes
    with caplog.at_level(logging.WARNING, logger="labelfree_app.models.onnx_backend"):
        got = UNetPredictor(package, device="cpu").predict(_batch())
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert cache.read_bytes() == clean_bytes, "the cache is rebuilt from the verified weights"
    assert any(str(cache) in r.getMessage() and "rebuilt" in r.getMessage() for r in caplog.records)


def test_a_cache_that_fails_to_load_is_rebuilt_even_when_its_record_matches(tmp_path):
    """A cache file that ONNX Runtime cannot open (cut short, record rewritten to match) is rebuilt."""
    package = make_unet_package(tmp_path)
    expected, cache = _clean_run(package)
    cache.write_bytes(cache.read_bytes()[:100])
    cache.with_name(cache.name + CHECKSUM_SUFFIX).write_text(sha256_of_file(cache) + "\n")
    got = UNetPredictor(package, device="cpu").predict(_batch())
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert sha256_of_file(cache) == cache.with_name(cache.name + CHECKSUM_SUFFIX).read_text().strip()


@pytest.mark.parametrize("damage", ["truncated", "empty", "no-record", "bad-record"])
def test_a_damaged_or_unrecorded_cache_still_works_and_is_repaired(tmp_path, damage):
    package = make_unet_package(tmp_path)
    expected, cache = _clean_run(package)
    record = cache.with_name(cache.name + CHECKSUM_SUFFIX)
    if damage == "truncated":
        cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    elif damage == "empty":
        cache.write_bytes(b"")
    elif damage == "no-record":
        record.unlink()
    else:
        record.write_text("not a checksum")
    for _ in range(2):  # the run after the repair uses the repaired cache
        got = UNetPredictor(package, device="cpu").predict(_batch())
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert record.read_text().strip() == sha256_of_file(cache)


def test_an_unwritable_cache_folder_only_costs_time(tmp_path):
    package = make_unet_package(tmp_path)
    paths.user_cache_dir().mkdir(parents=True, exist_ok=True)
    (paths.user_cache_dir() / "onnx").write_text("a file where the folder should be")
    got = UNetPredictor(package, device="cpu").predict(_batch())
    assert got.shape == (2, 1, 32, 48) and np.isfinite(got).all()


@pytest.mark.parametrize(("backend_env", "expected"), [(None, "onnxruntime"), ("torch", "torch")])
def test_provenance_records_the_backend_that_ran(tmp_path, monkeypatch, backend_env, expected):
    if backend_env:
        monkeypatch.setenv("LABELFREE_BACKEND", backend_env)
    engine = PredictionEngine(make_unet_package(tmp_path), device="cpu")
    image = Image.from_array(np.random.default_rng(0).normal(100, 10, (1, 1, 40, 40)).astype(np.float32), "CZYX")
    result = engine.predict(image)
    assert result.backend == expected
    source = tmp_path / "in.tif"
    assert provenance(result, engine.manifest, [source], hash_inputs=False)["backend"] == expected
    out = tmp_path / "out"
    out.mkdir()
    (written, *_) = write_result(result, engine.manifest, [source], output_paths(source, "test-unet", out))
    assert read_provenance(written)["backend"] == expected


def test_sessions_run_without_the_memory_pattern_planner():
    """Its per-shape buffer cost 100-200 MB of peak memory for no measured speed (see session_options)."""
    from labelfree_app.models.onnx_backend import session_options

    options = session_options(1)
    assert options.enable_mem_pattern is False
    assert options.enable_cpu_mem_arena is True and session_options(1, arena=False).enable_cpu_mem_arena is False
