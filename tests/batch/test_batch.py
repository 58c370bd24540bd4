"""`labelfree batch`: good and bad files, resume, interruption, read-only output, shards, reports."""

from __future__ import annotations

import csv
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from labelfree_app.batch import merge_shard_reports, parse_shard, plan_batch
from labelfree_app.batch.plan import BatchPlanError, ModelRef
from labelfree_app.cli.main import main
from labelfree_app.io import read_image, read_provenance
from tests.batch.conftest import ROOT
from tests.factories import write_field

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def report_rows(out: Path, name: str = "batch_report") -> list[dict[str, str]]:
    with open(out / f"{name}.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def visible_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
                  and not p.name.startswith("."))


def test_good_files_finish_bad_files_are_reported_and_the_exit_code_says_so(
        tmp_path, unet_package, fields_dir, capsys):
    (fields_dir / "corrupt.tif").write_bytes(b"II*\x00" + b"\x00" * 40)
    (fields_dir / "notes.txt").write_text("plate map", encoding="utf-8")
    before = {p.name: p.read_bytes() for p in fields_dir.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    code = main(["batch", str(fields_dir), "-o", str(out), "--model", str(unet_package.path),
                 "--target-channel", "Hoechst", "-q"])
    assert code == 1
    rows = {Path(r["input"]).name: r for r in report_rows(out)}
    assert {n: r["status"] for n, r in rows.items()} == {
        "a.tif": "done", "b.tif": "done", "c.tif": "done", "corrupt.tif": "failed", "notes.txt": "failed"}
    for bad in ("corrupt.tif", "notes.txt"):
        reason = rows[bad]["error"]
        assert bad in reason and reason.endswith(".") and reason.count(". ") == 0 and "Traceback" not in reason
        assert rows[bad]["outputs"] == ""
    assert float(rows["a.tif"]["pearson_r"]) > -1.0 and rows["a.tif"]["device"] == "cpu"
    out_a = out / "a__test-unet.ome.tif"
    assert read_image(out_a).data.shape == (1, 1, 64, 80)
    assert read_provenance(out_a)["inputs"][0]["sha256"]
    assert (out / "sub" / "c__test-unet.ome.tif").is_file()  # a folder input's sub-folders are kept
    report = json.loads((out / "batch_report.json").read_text())
    assert report["summary"]["done"] == 3 and report["summary"]["failed"] == 2
    assert before == {p.name: p.read_bytes() for p in fields_dir.rglob("*") if p.is_file()}  # inputs untouched
    assert "corrupt.tif" in capsys.readouterr().err


def test_running_again_skips_what_is_done_and_overwrite_redoes_it(tmp_path, unet_package, fields_dir):
    out = tmp_path / "out"
    args = ["batch", str(fields_dir), "-o", str(out), "--model", str(unet_package.path), "-q"]
    assert main(args) == 0
    first = {p: p.stat().st_mtime_ns for p in out.rglob("*.ome.tif")}
    assert main(args) == 0
    assert {r["status"] for r in report_rows(out)} == {"skipped"}
    assert first == {p: p.stat().st_mtime_ns for p in out.rglob("*.ome.tif")}
    time.sleep(0.01)
    assert main(args + ["--overwrite"]) == 0
    assert {r["status"] for r in report_rows(out)} == {"done"}
    assert all(p.stat().st_mtime_ns > first[p] for p in first)


def test_a_diffusion_job_counts_as_done_only_with_its_variance(tmp_path, diffusion_package, fields_dir):
    out = tmp_path / "out"
    args = ["batch", str(fields_dir / "a.tif"), "-o", str(out), "--model", str(diffusion_package.path),
            "--samples", "2", "--steps", "2", "-q"]
    assert main(args) == 0
    variance = out / "a__test-diffusion__variance.ome.tif"
    variance.unlink()
    assert main(args) == 0
    assert report_rows(out)[0]["status"] == "done" and variance.is_file()


def _batch_command(inputs: Path, out: Path, package: Path) -> list[str]:
    return [sys.executable, "-m", "labelfree_app.cli", "batch", str(inputs), "-o", str(out), "--model",
            str(package), "--samples", "2", "--steps", "12", "-q"]


@pytest.mark.parametrize("how", ["kill", "interrupt"])
def test_an_interrupted_batch_leaves_only_complete_outputs_and_resumes_to_the_same_set(
        tmp_path, diffusion_package, how):
    inputs = tmp_path / "many"
    for i in range(8):
        write_field(inputs / f"f{i}.tif", seed=i, shape=(96, 96))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LABELFREE_BACKEND": "torch", "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    subprocess.run(_batch_command(inputs, reference, diffusion_package.path), env=env, check=True,
                   capture_output=True, timeout=300)

    out = tmp_path / "out"
    process = subprocess.Popen(_batch_command(inputs, out, diffusion_package.path), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(out.glob("*__variance.ome.tif")) and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL if how == "kill" else signal.SIGINT)
    _, err = process.communicate(timeout=120)
    if how == "interrupt":
        assert process.returncode == 130 and b"Stopping after the current file" in err
    partial = visible_files(out)
    assert 0 < len([p for p in partial if p.endswith("ome.tif")]) < len(visible_files(reference)) - 2
    for name in partial:
        if name.endswith(".ome.tif"):
            assert read_image(out / name).data.size > 0  # every output there is complete and readable

    resumed = subprocess.run(_batch_command(inputs, out, diffusion_package.path), env=env,
                             capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert visible_files(out) == visible_files(reference)
    assert not [p for p in out.rglob(".*.part")]  # temp files a kill left behind are cleaned up
    statuses = {r["status"] for r in report_rows(out)}
    assert statuses == {"done", "skipped"}
    for name in visible_files(reference):
        if name.endswith(".ome.tif"):
            np.testing.assert_array_equal(read_image(out / name).data, read_image(reference / name).data)


@pytest.mark.skipif(IS_ROOT or os.name == "nt", reason="root ignores folder permissions; the next test covers it")
def test_a_read_only_output_folder_fails_fast(tmp_path, unet_package, fields_dir, capsys):
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        start = time.perf_counter()
        assert main(["batch", str(fields_dir), "-o", str(out), "--model", str(unet_package.path), "-q"]) == 1
        assert time.perf_counter() - start < 5
    finally:
        out.chmod(stat.S_IRWXU)
    err = capsys.readouterr().err
    assert "read-only" in err and str(out) in err and list(out.iterdir()) == []


def test_an_output_folder_the_os_reports_read_only_fails_before_any_job(
        tmp_path, unet_package, fields_dir, monkeypatch, capsys):
    from labelfree_app.io import atomic

    out = tmp_path / "locked"
    out.mkdir()
    real_access = os.access
    monkeypatch.setattr(atomic.os, "access", lambda path, mode, *a, **k: False if Path(path) == out
                        and mode & os.W_OK else real_access(path, mode, *a, **k))
    assert main(["batch", str(fields_dir), "-o", str(out), "--model", str(unet_package.path), "-q"]) == 1
    err = capsys.readouterr().err
    assert "read-only" in err and "choose another folder" in err
    assert list(out.iterdir()) == []  # not even a report: nothing ran


def test_shards_cover_every_input_exactly_once_and_merge_into_one_report(tmp_path, unet_package):
    inputs = tmp_path / "plate"
    for i in range(10):
        write_field(inputs / f"w{i:02d}.tif", seed=i, shape=(32, 32))
    model = ModelRef("test-unet", str(unet_package.path), "", "unet")
    plans = [plan_batch([inputs], [model], tmp_path / "out", shard=parse_shard(f"{k}/3")) for k in (1, 2, 3)]
    keys = [job.input.key for plan in plans for job in plan.jobs]
    assert sorted(keys) == sorted(f"w{i:02d}.tif" for i in range(10))  # each exactly once
    assert all(plan.other_shards == 10 - len(plan.jobs) for plan in plans)

    out = tmp_path / "out"
    for k in (1, 2, 3):
        assert main(["batch", str(inputs), "-o", str(out), "--model", str(unet_package.path),
                     "--shard", f"{k}/3", "-q"]) == 0
    assert main(["batch-report", str(out)]) == 0
    merged = report_rows(out)
    assert sorted(Path(r["input"]).name for r in merged) == sorted(f"w{i:02d}.tif" for i in range(10))
    assert {r["status"] for r in merged} == {"done"}
    assert len(list(out.glob("*.ome.tif"))) == 10


def test_merging_refuses_an_incomplete_set_of_shards(tmp_path, unet_package, fields_dir):
    out = tmp_path / "out"
    main(["batch", str(fields_dir), "-o", str(out), "--model", str(unet_package.path), "--shard", "1/2", "-q"])
    with pytest.raises(Exception, match="1 of 2 shard reports"):
        merge_shard_reports(out)


@pytest.mark.parametrize("text", ["3", "0/2", "3/2", "a/b", "1/0"])
def test_bad_shard_arguments_are_refused_in_one_sentence(text):
    with pytest.raises(BatchPlanError, match="--shard"):
        parse_shard(text)


def test_inputs_that_would_write_the_same_output_are_refused(tmp_path, unet_package):
    write_field(tmp_path / "x" / "a.tif", seed=0)
    write_field(tmp_path / "y" / "a.tif", seed=1)
    model = ModelRef("test-unet", str(unet_package.path), "", "unet")
    with pytest.raises(BatchPlanError, match="same output names"):
        plan_batch([tmp_path / "x" / "a.tif", tmp_path / "y" / "a.tif"], [model], tmp_path / "out")


def test_the_output_folder_inside_an_input_folder_is_not_read_as_input(tmp_path, unet_package, fields_dir):
    out = fields_dir / "predictions"
    args = ["batch", str(fields_dir), "-o", str(out), "--model", str(unet_package.path), "-q"]
    assert main(args) == 0 and main(args) == 0
    assert len(report_rows(out)) == 3
