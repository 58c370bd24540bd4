"""The bundled ISL models still score what their manifests claim on the never-trained test quadrant."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from labelfree_app.training import evaluate

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "resources" / "models"


def _training_script():
    spec = importlib.util.spec_from_file_location("train_isl_models", ROOT / "scripts" / "train_isl_models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT = _training_script()
TARGET_FILES = {target_name: file for file, target_name, _ in SCRIPT.TARGETS.values()}  # "DNA (DAPI)" -> its PNG
ISL_MODELS = sorted(p.name for p in MODELS.glob("isl-*") if (p / "manifest.json").is_file())


def _params() -> list[object]:
    params = []
    for name in ISL_MODELS:
        kind = json.loads((MODELS / name / "manifest.json").read_text())["kind"]
        params.append(pytest.param(name, marks=pytest.mark.slow) if kind == "diffusion" else name)
    return params


@pytest.mark.parametrize("model_id", _params())
def test_a_bundled_isl_model_reproduces_its_recorded_test_quadrant_pearson_r(model_id: str, shared_data: Path) -> None:
    manifest = json.loads((MODELS / model_id / "manifest.json").read_text())
    recorded = manifest["metrics"]["evaluation"]
    pair = SCRIPT.full_pair(TARGET_FILES[manifest["target"]])  # the script reads ../shared, as shared_data does
    settings = recorded["settings"]
    report = evaluate(MODELS / model_id, [pair], region=recorded["region"], device="cpu", tta=bool(settings["tta"]),
                      samples=settings["samples"], steps=settings["steps"], seed=settings["seed"])
    assert report.pearson_r == pytest.approx(recorded["mean"]["pearson_r"], abs=0.01)
    assert report.pearson_r >= (0.85 if manifest["target"] == "MAP2 (dendrites, somata)" else 0.75)
