"""One batch per output folder (a lock file), stale temp files, and interrupted batches."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labelfree_app.batch import BatchOptions, plan_batch, run_batch
from labelfree_app.batch.local import JobFinished, JobStarted
from labelfree_app.batch.lock import LOCK_NAME, BatchBusyError, BatchLock
from labelfree_app.batch.plan import resolve_models
from labelfree_app.batch.process import STALE_TEMP_AGE_S, remove_stale_temps
from labelfree_app.cli.main import main
from labelfree_app.core.engine import PredictSettings
from labelfree_app.io import read_image
from tests.batch.conftest import ROOT

POSIX_ONLY = pytest.mark.skipif(os.name == "nt", reason="uses POSIX signals")


def _hold_lock_in_another_process(out: Path) -> subprocess.Popen:
    code = ("import sys, time; from pathlib import Path; from labelfree_app.batch.lock import BatchLock; "
            "BatchLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert holder.stdout.readline().strip() == b"held"
    return holder


@POSIX_ONLY
def test_a_second_batch_on_the_same_folder_is_refused_and_a_dead_owners_lock_is_taken_over(
        tmp_path, unet_package, fields_dir, capsys):
    out = tmp_path / "out"
    out.mkdir()
    holder = _hold_lock_in_another_process(out)
    try:
        args = ["batch", str(fields_dir), "-o", str(out), "--model", str(unet_package.path), "-q"]
        assert main(args) == 1
        err = capsys.readouterr().err
        assert (f"Another LabelFree batch (pid {holder.pid}) is writing to {out}; wait for it to finish or "
                "choose another output folder.") in err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing ran
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert main(args) == 0  # the owner is dead: its lock is stale
    assert not (out / LOCK_NAME).exists()
    assert len(list(out.rglob("*.ome.tif"))) == 3


def test_the_lock_records_its_owner_and_a_second_taker_in_the_same_process_is_refused(tmp_path):
    lock = BatchLock(tmp_path)
    lock.acquire()
    owner = json.loads((tmp_path / LOCK_NAME).read_text())
    assert owner["pid"] == os.getpid() and owner["host"]
    with pytest.raises(BatchBusyError, match=f"pid {os.getpid()}"):
        BatchLock(tmp_path).acquire()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_shards_of_one_batch_lock_separately(tmp_path):
    first, second = BatchLock(tmp_path, "batch_report.shard-1-of-2"), BatchLock(tmp_path, "batch_report.shard-2-of-2")
    first.acquire()
    second.acquire()
    first.release()
    second.release()
    assert list(tmp_path.iterdir()) == []


def test_only_old_temp_files_are_removed_when_a_job_starts(tmp_path):
    target = tmp_path / "a__m.ome.tif"
    fresh, old = tmp_path / ".a__m.ome.tif.0123abcd.part", tmp_path / ".a__m.ome.tif.89abcdef.part"
    fresh.write_bytes(b"being written")
    old.write_bytes(b"left by a killed run")
    long_ago = time.time() - STALE_TEMP_AGE_S - 60
    os.utime(old, (long_ago, long_ago))
    remove_stale_temps([target])
    assert fresh.exists() and not old.exists()


def _options(**settings) -> BatchOptions:
    return BatchOptions(settings=PredictSettings(**settings), target_channel="Hoechst")


def test_a_dead_batchs_temp_files_are_removed_when_its_lock_is_taken_over(tmp_path, unet_package, fields_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname()}))
    temp = out / ".b__test-unet.ome.tif.0123abcd.part"
    temp.write_bytes(b"left by a killed run")
    models = resolve_models([str(unet_package.path)])
    *_, done = run_batch(plan_batch([fields_dir / "b.tif"], models, out), _options())
    assert done.ok and not temp.exists() and not (out / LOCK_NAME).exists()


def test_an_interrupt_while_writing_leaves_no_partial_job_a_consistent_report_and_no_lock(
        tmp_path, unet_package, fields_dir, monkeypatch):
    from labelfree_app import io

    out = tmp_path / "out"
    models = resolve_models([str(unet_package.path)])
    real_write = io.write_image

    def write_then_interrupt(path, *args, **kwargs):
        if "__variance" in Path(path).name and Path(path).name.startswith("b"):
            raise KeyboardInterrupt  # after b's prediction was written, before its variance
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(io, "write_image", write_then_interrupt)
    events = run_batch(plan_batch([fields_dir], models, out), _options(tta=True))
    seen = []
    with pytest.raises(KeyboardInterrupt):
        seen.extend(events)
    assert [e.row.status for e in seen if isinstance(e, JobFinished)] == ["done"]
    assert sorted(p.name for p in out.iterdir()) == ["a__test-unet.ome.tif", "a__test-unet__variance.ome.tif",
                                                     "batch_report.csv", "batch_report.json"]
    with open(out / "batch_report.csv", newline="", encoding="utf-8") as handle:
        statuses = {Path(r["input"]).name: r["status"] for r in csv.DictReader(handle)}
    assert statuses == {"a.tif": "done", "b.tif": "cancelled", "c.tif": "not run"}

    monkeypatch.setattr(io, "write_image", real_write)
    *_, done = run_batch(plan_batch([fields_dir], models, out), _options(tta=True))
    assert [r.status for r in done.rows] == ["skipped", "done", "done"]
    assert all(read_image(out / n).data.shape == (1, 1, 64, 80) for n in os.listdir(out) if n.endswith(".ome.tif"))


def test_closing_a_running_batch_releases_the_lock_and_writes_the_report(tmp_path, unet_package, fields_dir):
    out = tmp_path / "out"
    models = resolve_models([str(unet_package.path)])
    events = run_batch(plan_batch([fields_dir], models, out), _options())
    for event in events:
        if isinstance(event, JobStarted) and event.position == 1:
            break
    assert (out / LOCK_NAME).exists()
    events.close()  # what the GUI does when the window closes mid-batch
    assert not (out / LOCK_NAME).exists()
    with open(out / "batch_report.csv", newline="", encoding="utf-8") as handle:
        statuses = [r["status"] for r in csv.DictReader(handle)]
    assert statuses == ["done", "cancelled", "not run"]
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]


@POSIX_ONLY
def test_a_terminated_batch_leaves_no_lock_no_temp_and_a_report(tmp_path, diffusion_package):
    from tests.factories import write_field

    inputs = tmp_path / "many"
    for i in range(6):
        write_field(inputs / f"f{i}.tif", seed=i, shape=(96, 96))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "labelfree_app.cli", "batch", str(inputs), "-o", str(out), "--model",
               str(diffusion_package.path), "--samples", "2", "--steps", "12", "-q"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(out.glob("*__variance.ome.tif")) and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)  # what a job scheduler sends at the time limit
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err.decode()
    names = os.listdir(out)
    assert LOCK_NAME not in names and not [n for n in names if n.endswith(".part")]
    with open(out / "batch_report.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    statuses = [r["status"] for r in rows]
    assert set(statuses) <= {"done", "cancelled", "not run"} and statuses[-1] == "not run"
    for row in rows:  # a done row's files are all there; files of an unstarted job are not
        if row["status"] == "done":
            assert all(Path(p).is_file() for p in row["outputs"].split(";"))
        if row["status"] == "not run":
            assert not list(out.glob(Path(row["input"]).stem + "__*"))
    for name in names:
        if name.endswith(".ome.tif"):
            assert read_image(out / name).data.shape == (1, 1, 96, 96)
