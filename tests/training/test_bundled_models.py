"""The bundled ISL models still score what their manifests claim on the never-trained test quadrant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelfree_app.training import PairSpec, evaluate

MODELS = Path(__file__).resolve().parents[2] / "resources" / "models"
TARGET_FILES = {"DNA (DAPI)": "depth_computation-MAXPROJECT_DAPI_CONFOCAL.png",
                "MAP2 (dendrites, somata)": "depth_computation-MAXPROJECT_MAP2_CONFOCAL.png"}
ISL_MODELS = sorted(p.name for p in MODELS.glob("isl-*") if (p / "manifest.json").is_file())


def _params() -> list[object]:
    params = []
    for name in ISL_MODELS:
        kind = json.loads((MODELS / name / "manifest.json").read_text())["kind"]
        params.append(pytest.param(name, marks=pytest.mark.slow) if kind == "diffusion" else name)
    return params


@pytest.mark.parametrize("model_id", _params())
def test_a_bundled_isl_model_reproduces_its_recorded_test_quadrant_pearson_r(model_id: str, shared_data: Path) -> None:
    folder = shared_data / "isl_condition_b"
    manifest = json.loads((MODELS / model_id / "manifest.json").read_text())
    recorded = manifest["metrics"]["evaluation"]
    pair = PairSpec(input=str(folder / "z_depth-*_PHASE_CONTRAST.png"), target=str(folder / TARGET_FILES[manifest["target"]]))
    settings = recorded["settings"]
    report = evaluate(MODELS / model_id, [pair], region=recorded["region"], device="cpu", tta=bool(settings["tta"]),
                      samples=settings["samples"], steps=settings["steps"], seed=settings["seed"])
    assert report.pearson_r == pytest.approx(recorded["mean"]["pearson_r"], abs=0.01)
    assert report.pearson_r >= (0.85 if manifest["target"] == "MAP2 (dendrites, somata)" else 0.75)
