"""Evaluating a package on pairs: metrics on a region, a table and JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile

from labelfree_app.training.calibration import uncertainty_calibration
from labelfree_app.training.config import PairSpec
from labelfree_app.training.evaluate import evaluate, linear_baseline
from labelfree_app.training.loop import train

from .conftest import smooth_texture, tiny_config, write_pair


def test_evaluation_on_the_validation_region_agrees_with_training(trained: dict) -> None:
    in_path, tg_path = trained["pair"]
    report = evaluate(trained["package"], [PairSpec(str(in_path), str(tg_path))], region="64:128,64:128",
                      device="cpu")
    manifest = json.loads((Path(trained["package"]) / "manifest.json").read_text())
    (row,) = report.rows
    assert row.pixels == 64 * 64
    assert row.pearson_r == pytest.approx(manifest["metrics"]["pearson_r"], abs=0.02)
    assert 0 < row.nrmse < 0.2 and 0.5 < row.ssim <= 1.0
    assert row.within_1sigma is None  # a U-Net without TTA has no variance
    untrained = evaluate(trained["untrained_package"], [PairSpec(str(in_path), str(tg_path))],
                         region="64:128,64:128", device="cpu")
    assert untrained.rows[0].nrmse > row.nrmse


def test_report_renders_as_table_and_json(trained: dict) -> None:
    in_path, tg_path = trained["pair"]
    spec = PairSpec(str(in_path), str(tg_path))
    report = evaluate(trained["package"], [spec, spec], device="cpu", tta=True)
    table = report.to_table()
    assert "pearson_r" in table and "within_1sigma" in table and "mean" in table
    data = json.loads(report.to_json())
    assert data["model_id"] == "model" and data["kind"] == "unet" and len(data["pairs"]) == 2
    assert data["mean"]["pearson_r"] == pytest.approx(report.pearson_r)
    assert 0.0 <= data["pairs"][0]["within_2sigma"] <= 1.0
    assert "stain" in data["units"]  # a model trained now knows its stain's units
    assert data["pairs"][0]["median_abs_error"] > 0


def test_calibration_figures_follow_their_definitions() -> None:
    rng = np.random.default_rng(0)
    mean = np.zeros((1, 128, 128))
    std = np.repeat(np.linspace(0.1, 3.0, 128)[None, :], 128, axis=0)[None]  # uncertainty grows along X
    target = mean + std * rng.standard_normal(mean.shape)  # errors drawn with exactly that spread
    calibrated = uncertainty_calibration(mean, std**2, target, patch=16)
    assert calibrated.within_1sigma == pytest.approx(0.683, abs=0.02)
    assert calibrated.within_2sigma == pytest.approx(0.954, abs=0.01)
    assert calibrated.std_error_spearman > 0.8 and calibrated.n_patches == 64
    flat = uncertainty_calibration(mean, np.full(mean.shape, 0.01), target, patch=16)
    assert flat.within_1sigma < 0.1  # over-confident
    assert math.isnan(flat.std_error_spearman)  # a constant std ranks nothing


def test_diffusion_evaluation_reports_calibration(tmp_path: Path) -> None:
    pair = write_pair(tmp_path / "data", "field", shape=(64, 64), seed=9)
    package = train(tiny_config(pair, tmp_path / "diffusion", model_type="diffusion", max_steps=3, val_every=0,
                                checkpoint_every=0, val_region="32:64,32:64"))
    report = evaluate(package, [PairSpec(str(pair[0]), str(pair[1]))], region="32:64,32:64", samples=2,
                      steps=2, device="cpu")
    (row,) = report.rows
    assert report.kind == "diffusion" and math.isfinite(row.pearson_r)
    assert 0.0 <= row.within_1sigma <= row.within_2sigma <= 1.0
    assert row.std_error_spearman is not None


def test_zscore_units_score_calibration_whatever_the_stains_intensities(tmp_path: Path) -> None:
    """The same stain recorded in other units (another camera, bit depth, dye brightness): in z-scores
    the figures do not move; in the stain's units the error is mostly the change of units."""
    pair = write_pair(tmp_path / "data", "field", shape=(64, 64), seed=9)
    package = train(tiny_config(pair, tmp_path / "diffusion", model_type="diffusion", max_steps=3, val_every=0,
                                checkpoint_every=0, val_region="32:64,32:64"))
    manifest = json.loads((Path(package) / "manifest.json").read_text())
    assert manifest["normalization"]["output"]  # it knows its stain's units
    other = tmp_path / "data" / "other_units.tif"
    tifffile.imwrite(other, tifffile.imread(pair[1]).astype(np.float32) * 37.0 + 9000.0)
    rows = {}
    for target in (pair[1], other):
        for units in ("zscore", None):
            report = evaluate(package, [PairSpec(str(pair[0]), str(target))], samples=2, steps=2, device="cpu",
                              units=units)
            rows[(target, units)] = report.rows[0]
            assert report.settings["units"] == (units or "stain")
    same, moved = rows[(pair[1], "zscore")], rows[(other, "zscore")]
    assert moved.pearson_r == pytest.approx(same.pearson_r, abs=1e-4)
    assert moved.within_1sigma == pytest.approx(same.within_1sigma, abs=1e-3)
    assert math.isfinite(same.std_error_spearman)
    assert moved.std_error_spearman == pytest.approx(same.std_error_spearman, abs=1e-3)
    assert moved.median_abs_error == pytest.approx(same.median_abs_error, rel=1e-3)
    assert rows[(other, None)].median_abs_error > 20 * rows[(pair[1], None)].median_abs_error  # stain units


def test_linear_baseline_recovers_a_per_pixel_linear_target(tmp_path: Path) -> None:
    planes = np.stack([smooth_texture((64, 64), seed) for seed in range(4)]).astype(np.float32)
    tifffile.imwrite(tmp_path / "stack.tif", planes, imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "linear.tif", 2 * planes[0] - planes[3] + 500)
    tifffile.imwrite(tmp_path / "squared.tif", (planes[1] - planes[1].mean()) ** 2)
    linear = linear_baseline([PairSpec(str(tmp_path / "stack.tif"), str(tmp_path / "linear.tif"))],
                             region="32:64,32:64")
    assert linear.rows[0].pearson_r > 0.999 and linear.rows[0].pixels == 32 * 32
    squared = linear_baseline([PairSpec(str(tmp_path / "stack.tif"), str(tmp_path / "squared.tif"))],
                              region="32:64,32:64")
    assert squared.rows[0].pearson_r < 0.5
