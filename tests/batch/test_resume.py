"""Resuming a batch: outputs are verified before they are skipped, and report columns survive resumes."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from labelfree_app.batch.verify import check_output
from labelfree_app.cli.main import main
from labelfree_app.io import read_image, write_image


def report_rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "batch_report.csv", newline="", encoding="utf-8") as handle:
        return {Path(r["input"]).name: r for r in csv.DictReader(handle)}


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(size)


@pytest.fixture()
def three_plane_output(tmp_path: Path) -> Path:
    path = tmp_path / "stack__m.ome.tif"
    data = np.random.default_rng(0).random((1, 3, 64, 80), dtype=np.float32)
    write_image(path, data, "CZYX", provenance={"software": "LabelFree"})
    return path


def test_a_complete_output_passes_and_its_facts_are_recorded(three_plane_output):
    facts, problem = check_output(three_plane_output)
    assert problem == ""
    assert facts == {"bytes": three_plane_output.stat().st_size, "shape": [64, 80], "dtype": "float32",
                     "pages": 3}


@pytest.mark.parametrize("keep", [0, 8, 100, 1000, 0.5, 0.75, -1])
def test_an_output_cut_short_anywhere_fails_verification(three_plane_output, keep):
    size = three_plane_output.stat().st_size
    _truncate(three_plane_output, int(size * keep) if isinstance(keep, float) else (size - 1 if keep == -1
                                                                                    else keep))
    facts, problem = check_output(three_plane_output)
    assert facts is None and problem


def test_an_output_that_differs_from_what_the_report_recorded_fails(three_plane_output):
    facts, _ = check_output(three_plane_output)
    assert check_output(three_plane_output, recorded=facts) == (facts, "")
    _, problem = check_output(three_plane_output, recorded={**facts, "bytes": facts["bytes"] + 10})
    assert "report" in problem


def test_a_truncated_or_empty_output_is_redone_not_skipped(tmp_path, unet_package, fields_dir):
    out = tmp_path / "out"
    args = ["batch", str(fields_dir), "-o", str(out), "--model", str(unet_package.path), "--tta", "-q"]
    assert main(args) == 0
    prediction_a = out / "a__test-unet.ome.tif"
    variance_b = out / "b__test-unet__variance.ome.tif"
    good_a = read_image(prediction_a).data
    _truncate(prediction_a, 1000)
    variance_b.write_bytes(b"")

    assert main(args) == 0
    rows = report_rows(out)
    assert rows["a.tif"]["status"] == "done" and "redone" in rows["a.tif"]["note"]
    assert prediction_a.name in rows["a.tif"]["note"]
    assert rows["b.tif"]["status"] == "done" and variance_b.name in rows["b.tif"]["note"]
    assert rows["c.tif"]["status"] == "skipped"
    np.testing.assert_array_equal(read_image(prediction_a).data, good_a)
    assert read_image(variance_b).data.shape == (1, 1, 64, 80)


def test_a_truncated_output_is_redone_even_without_a_report(tmp_path, unet_package, fields_dir):
    out = tmp_path / "out"
    args = ["batch", str(fields_dir), "-o", str(out), "--model", str(unet_package.path), "-q"]
    assert main(args) == 0
    for report in out.glob("batch_report.*"):
        report.unlink()
    prediction = out / "a__test-unet.ome.tif"
    _truncate(prediction, prediction.stat().st_size // 2)
    assert main(args) == 0
    assert report_rows(out)["a.tif"]["status"] == "done"
    assert read_image(prediction).data.shape == (1, 1, 64, 80)


def test_a_readable_output_unlike_the_one_the_report_recorded_is_redone(tmp_path, unet_package, fields_dir):
    out = tmp_path / "out"
    args = ["batch", str(fields_dir), "-o", str(out), "--model", str(unet_package.path), "-q"]
    assert main(args) == 0
    prediction = out / "a__test-unet.ome.tif"
    write_image(prediction, np.zeros((1, 1, 32, 32), np.float32), "CZYX")  # a valid TIFF, but not ours
    assert main(args) == 0
    row = report_rows(out)["a.tif"]
    assert row["status"] == "done" and "report" in row["note"]
    assert read_image(prediction).data.shape == (1, 1, 64, 80)


def test_resuming_twice_keeps_pearson_r_and_device_for_every_row(tmp_path, unet_package, fields_dir):
    out = tmp_path / "out"
    args = ["batch", str(fields_dir), "-o", str(out), "--model", str(unet_package.path),
            "--target-channel", "Hoechst", "-q"]
    assert main(args) == 0
    first = report_rows(out)
    assert main(args) == 0
    assert main(args) == 0
    rows = report_rows(out)
    assert {r["status"] for r in rows.values()} == {"skipped"}
    for name, row in rows.items():
        assert row["pearson_r"] == first[name]["pearson_r"] != ""
        assert row["device"] == "cpu"
    document = json.loads((out / "batch_report.json").read_text())
    assert all(row["files"] for row in document["rows"])  # what each output looked like, for the next resume
    assert not [p for p in os.listdir(out) if p.endswith(".part")]
