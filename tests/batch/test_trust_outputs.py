"""The trust estimate outside the window: provenance, the trust map file, the report, resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile

from labelfree_app.batch.plan import BatchInput, BatchJob, ModelRef, model_ref
from labelfree_app.batch.process import STREAM_MIN_PIXELS, BatchOptions, expected_outputs
from labelfree_app.batch.report import BatchRow, read_report, write_report
from labelfree_app.cli.main import main
from labelfree_app.core import trust_recorder
from labelfree_app.core.engine import PredictSettings
from labelfree_app.core.trust_recorder import STREAMED_MAP_MAX_PIXELS
from labelfree_app.io import read_image, read_provenance, write_image
from tests.factories import constant_calibration, make_unet_package, trust_block
from tests.synthetic_cells import render_cells


def report_rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "batch_report.csv", newline="", encoding="utf-8") as handle:
        return {Path(r["input"]).name: r for r in csv.DictReader(handle)}


@pytest.fixture()
def profiled_package(tmp_path: Path):
    return make_unet_package(tmp_path / "models", model_id="trusty", trust=trust_block())


def test_batch_writes_trust_maps_provenance_and_report_columns(tmp_path, profiled_package, fields_dir,
                                                                monkeypatch, capsys):
    monkeypatch.setattr(trust_recorder, "bundled_calibration", lambda path=None: constant_calibration(0.3))
    out = tmp_path / "out"
    assert main(["batch", str(fields_dir), "-o", str(out), "--model", str(profiled_package.path),
                 "--trust-map"]) == 0
    for name in ("a", "b", "sub/c"):
        trust_file = out / f"{name}__trusty__trust.ome.tif"
        familiar = read_image(trust_file)
        assert familiar.data.shape == (1, 1, 64, 80)  # the prediction's Y X, one channel
        assert tuple(familiar.channel_names) == ("familiarity",)
        values = np.asarray(familiar.data)
        assert 0.0 <= values.min() and values.max() <= 1.0 and values.max() > 0.0
        meta = read_provenance(trust_file)
        assert meta["content"] == "trust map" and meta["model"]["id"] == "trusty"
    trust = read_provenance(out / "a__trusty.ome.tif")["trust"]
    assert trust["expected_r"] == pytest.approx(0.3) and trust["interval"] == pytest.approx([0.2, 0.4])
    assert trust["level"] == "not trustworthy" and trust["method"] == "lf-trust-1"
    rows = report_rows(out)
    assert {r["trust"] for r in rows.values()} == {"not trustworthy"}
    assert float(rows["a.tif"]["expected_r"]) == pytest.approx(0.3)
    assert float(rows["a.tif"]["expected_r_low"]) == pytest.approx(0.2)
    assert float(rows["a.tif"]["expected_r_high"]) == pytest.approx(0.4)
    assert rows["a.tif"]["outputs"].endswith("a__trusty__trust.ome.tif")
    document = json.loads((out / "batch_report.json").read_text())
    assert {row["trust"] for row in document["rows"]} == {"not trustworthy"}
    assert all(row["trust_advice"] for row in document["rows"])
    err = capsys.readouterr().err
    assert "a.tif × trusty: expected r 0.30 (0.20-0.40): not trustworthy" in err
    assert "warning: a.tif × trusty: the prediction is not trustworthy. Why:" in err


def test_resume_wants_the_trust_map_and_keeps_the_estimate(tmp_path, profiled_package, fields_dir, monkeypatch):
    monkeypatch.setattr(trust_recorder, "bundled_calibration", lambda path=None: constant_calibration(0.8))
    out = tmp_path / "out"
    args = ["batch", str(fields_dir), "-o", str(out), "--model", str(profiled_package.path), "--trust-map", "-q"]
    assert main(args) == 0
    assert main(args) == 0
    rows = report_rows(out)
    assert {r["status"] for r in rows.values()} == {"skipped"}
    assert {r["trust"] for r in rows.values()} == {"good"}  # carried forward from the run that made them
    (out / "a__trusty__trust.ome.tif").unlink()
    assert main(args) == 0
    rows = report_rows(out)
    assert rows["a.tif"]["status"] == "done" and rows["b.tif"]["status"] == "skipped"
    assert (out / "a__trusty__trust.ome.tif").is_file()


def test_a_model_without_an_input_profile_says_why_it_wrote_no_trust_map(tmp_path, unet_package, fields_dir,
                                                                       monkeypatch):
    monkeypatch.setattr(trust_recorder, "bundled_calibration", lambda path=None: {})
    out = tmp_path / "out"
    args = ["batch", str(fields_dir), "-o", str(out), "--model", str(unet_package.path), "--trust-map", "-q"]
    assert main(args) == 0
    assert not list(out.rglob("*__trust.ome.tif"))
    rows = report_rows(out)
    assert "No trust map: test-unet draws none (only 2D models that recorded their training inputs" in rows[
        "a.tif"]["note"]
    assert rows["a.tif"]["expected_r"] == "" and rows["a.tif"]["trust"] == ""  # no calibration: no estimate
    assert read_provenance(out / "a__test-unet.ome.tif")["trust"] is None
    assert main(args) == 0
    assert {r["status"] for r in report_rows(out).values()} == {"skipped"}  # done without the map


def test_the_trust_map_is_expected_only_when_asked_for_drawable_and_not_too_large(tmp_path, profiled_package):
    job = BatchJob(0, BatchInput(tmp_path / "a.tif"), model_ref(profiled_package))
    plain = BatchJob(0, BatchInput(tmp_path / "a.tif"), ModelRef("m", "m", "", "unet"))
    asked = BatchOptions(trust_map=True)
    trust = tmp_path / "a__trusty__trust.ome.tif"
    small = SimpleNamespace(data=np.zeros((1, 1, 64, 80)), n_channels=1)
    huge = SimpleNamespace(data=SimpleNamespace(shape=(1, 1, STREAM_MIN_PIXELS // 1000 + 1, 1000)), n_channels=1)
    side = int(STREAMED_MAP_MAX_PIXELS ** 0.5)
    giant = SimpleNamespace(data=SimpleNamespace(shape=(2, 1, side + 1, side)), n_channels=2)
    assert job.model.trust_map and not plain.model.trust_map
    assert trust in expected_outputs(job, tmp_path, asked, small)
    assert trust in expected_outputs(job, tmp_path, asked)  # input not read: want it
    assert trust in expected_outputs(job, tmp_path, asked, huge)  # streamed, and its map fits in memory
    assert trust not in expected_outputs(job, tmp_path, asked, giant)  # streamed: too large for a map
    assert trust not in expected_outputs(job, tmp_path, BatchOptions())
    assert len(expected_outputs(plain, tmp_path, asked)) == 1
    zarr = expected_outputs(job, tmp_path, BatchOptions(trust_map=True, format="ome-zarr"))
    assert tmp_path / "a__trusty__trust.ome.zarr" in zarr


def test_read_report_reads_a_report_written_before_trust_columns(tmp_path):
    old = {"software": "LabelFree", "rows": [{"index": 0, "input": "a.tif", "key": "a.tif", "model": "m",
                                              "status": "done", "pearson_r": 0.7, "device": "cpu"}]}
    (tmp_path / "batch_report.json").write_text(json.dumps(old))
    (row,) = read_report(tmp_path / "batch_report.json")
    assert row.status == "done" and row.expected_r is None and row.trust == "" and row.trust_estimate() is None
    csv_path, _ = write_report([row], tmp_path, "again")
    header = csv_path.read_text().splitlines()[0].split(",")
    assert header[-4:] == ["expected_r", "expected_r_low", "expected_r_high", "trust"]
    assert csv_path.read_text().splitlines()[1].endswith(",,,,")


def test_a_recorded_estimate_reads_back_as_a_summary():
    row = BatchRow(0, "a.tif", "a.tif", "m", expected_r=0.81, expected_r_low=0.7, expected_r_high=0.9,
                   trust="good", trust_reason="It looks familiar.", trust_advice="Check now and then.")
    assert row.trust_estimate().summary() == "expected r 0.81 (0.70-0.90): good"


def test_a_streamed_job_writes_the_trust_map_of_the_whole_image_job(tmp_path, profiled_package, monkeypatch):
    from labelfree_app.batch import process

    monkeypatch.setattr(trust_recorder, "bundled_calibration", lambda path=None: constant_calibration(0.8))
    cells = render_cells((300, 290), seed=5)
    src = tmp_path / "in" / "big.tif"
    src.parent.mkdir()
    write_image(src, np.stack([cells.brightfield, cells.nuclei])[:, None], "CZYX",
                channel_names=["Brightfield", "Hoechst"], pixel_size_um={"Y": 0.65, "X": 0.65})
    job = BatchJob(0, BatchInput(src), model_ref(profiled_package))
    options = BatchOptions(settings=PredictSettings(tile_shape=(64, 64)), trust_map=True, hash_inputs=False)
    maps = {}
    for name, limit in (("whole", 10**12), ("streamed", 100)):  # 64² tiles: many bands in the streamed run
        monkeypatch.setattr(process, "STREAM_MIN_PIXELS", limit)
        row = process.process_job(job, tmp_path / name, options, process.EngineCache())
        assert row.status == "done", row.error
        trust_file = tmp_path / name / "big__trusty__trust.ome.tif"
        assert str(trust_file) in row.outputs and "No trust map" not in row.note
        maps[name] = read_image(trust_file)
        meta = read_provenance(trust_file)
        assert meta["content"] == "trust map" and meta["trust"]["expected_r"] == pytest.approx(0.8)
    streamed, whole = maps["streamed"], maps["whole"]
    assert streamed.data.shape == whole.data.shape == (1, 1, 300, 290)
    assert tuple(streamed.channel_names) == ("familiarity",)
    assert streamed.pixel_size_um == whole.pixel_size_um and streamed.pixel_size_um.get("X") == pytest.approx(0.65)
    assert float(np.min(whole.data)) < float(np.max(whole.data))
    np.testing.assert_allclose(np.asarray(streamed.data), np.asarray(whole.data), atol=1e-5)
    with tifffile.TiffFile(tmp_path / "streamed" / "big__trusty.ome.tif") as tif:
        assert tif.pages[0].is_tiled  # the prediction itself was streamed


def test_resume_wants_the_trust_map_of_a_streamed_job(tmp_path, profiled_package, fields_dir, monkeypatch):
    from labelfree_app.batch import process

    monkeypatch.setattr(process, "STREAM_MIN_PIXELS", 100)  # every field streams
    out = tmp_path / "out"
    args = ["batch", str(fields_dir), "-o", str(out), "--model", str(profiled_package.path), "--trust-map", "-q"]
    assert main(args) == 0
    assert {p.name for p in out.rglob("*__trust.ome.tif")} == {f"{n}__trusty__trust.ome.tif" for n in "abc"}
    assert "No trust map" not in report_rows(out)["a.tif"]["note"]
    assert main(args) == 0
    assert {r["status"] for r in report_rows(out).values()} == {"skipped"}
    (out / "a__trusty__trust.ome.tif").unlink()
    assert main(args) == 0
    rows = report_rows(out)
    assert rows["a.tif"]["status"] == "done" and rows["b.tif"]["status"] == "skipped"
    assert (out / "a__trusty__trust.ome.tif").is_file()


def test_a_streamed_image_over_the_map_cap_gets_no_trust_map_says_so_and_is_not_redone(
        tmp_path, profiled_package, fields_dir, monkeypatch):
    from labelfree_app.batch import process

    monkeypatch.setattr(trust_recorder, "bundled_calibration", lambda path=None: constant_calibration(0.8))
    monkeypatch.setattr(process, "STREAM_MIN_PIXELS", 100)  # every field streams...
    monkeypatch.setattr(trust_recorder, "STREAMED_MAP_MAX_PIXELS", 1000)  # ...and is too large for a map
    out = tmp_path / "out"
    args = ["batch", str(fields_dir), "-o", str(out), "--model", str(profiled_package.path), "--trust-map", "-q"]
    assert main(args) == 0
    assert (out / "a__trusty.ome.tif").is_file() and not list(out.rglob("*__trust.ome.tif"))
    row = report_rows(out)["a.tif"]
    assert "No trust map: an image this large (over " in row["note"] and "predicted in bands without one" in row["note"]
    assert row["trust"] == "good"  # the estimate stays
    assert main(args) == 0
    assert {r["status"] for r in report_rows(out).values()} == {"skipped"}


def test_ome_zarr_output_gets_a_trust_map_folder(tmp_path, profiled_package, fields_dir, monkeypatch):
    monkeypatch.setattr(trust_recorder, "bundled_calibration", lambda path=None: constant_calibration(0.8))
    out = tmp_path / "out"
    args = ["batch", str(fields_dir / "a.tif"), "-o", str(out), "--model", str(profiled_package.path),
            "--trust-map", "--format", "ome-zarr", "-q"]
    assert main(args) == 0
    familiar = read_image(out / "a__trusty__trust.ome.zarr")
    assert familiar.data.shape == (1, 1, 64, 80)
    assert 0.0 <= float(np.min(familiar.data)) <= float(np.max(familiar.data)) <= 1.0
    assert main(args) == 0
    assert report_rows(out)["a.tif"]["status"] == "skipped"
