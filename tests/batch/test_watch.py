"""`labelfree watch`: every new image predicted once, never read half-written, resumable."""

from __future__ import annotations

import csv
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labelfree_app.batch.arrivals import ArrivalQueue, is_temporary_name
from labelfree_app.io import read_provenance
from tests.factories import write_field

ROOT = Path(__file__).resolve().parents[2]

# Copies each prepared image into the watched folder slowly: even-numbered ones in 4 chunks under their
# final name (pauses shorter than the settle time), odd-numbered ones under a temporary name, then renamed.
WRITER = r"""
import os, sys, time
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
for i, path in enumerate(sorted(src.iterdir())):
    data = path.read_bytes()
    final = dst / path.name
    target = final if i % 2 == 0 else dst / (path.name + ".part")
    with open(target, "wb") as handle:
        for k in range(4):
            handle.write(data[k * len(data) // 4:(k + 1) * len(data) // 4])
            handle.flush()
            time.sleep(0.15)
    if target != final:
        os.replace(target, final)
"""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows(out: Path) -> list[dict[str, str]]:
    try:
        with open(out / "batch_report.csv", newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except OSError:
        return []


def _watch(folder: Path, out: Path, model: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "labelfree_app.cli", "watch", str(folder), "-o", str(out), "-m", str(model),
               "--settle", "0.6", "--poll", "0.2", *extra]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("name, temporary", [("cells.tif", False), ("cells.tif.part", True), ("~cells.tif", True),
                                              (".cells.tif", True), ("cells.tmp", True), ("cells.ome.tif", False)])
def test_names_written_during_acquisition_are_temporary(name, temporary):
    assert is_temporary_name(name) is temporary


def test_a_file_is_offered_once_settled_in_arrival_order_and_again_only_when_it_changes(tmp_path):
    clock = Clock()
    queue = ArrivalQueue(tmp_path, settle_s=2.0, clock=clock)
    first = tmp_path / "b.tif"
    first.write_bytes(b"x" * 10)
    queue.scan()
    clock.now = 1.0
    second = tmp_path / "a.tif"
    second.write_bytes(b"y" * 10)
    (tmp_path / "c.tif.part").write_bytes(b"z")
    queue.scan()
    assert queue.ready() == [] and queue.pending() == 2
    clock.now = 2.5
    assert [e.path.name for e in queue.ready()] == ["b.tif"]
    with open(second, "ab") as handle:  # still being written: settling starts again
        handle.write(b"more")
    os.utime(second, ns=(time.time_ns(), time.time_ns() + 10**9))
    queue.scan()
    clock.now = 4.0
    assert [e.path.name for e in queue.ready()] == ["b.tif"]
    clock.now = 5.0
    assert [e.path.name for e in queue.ready()] == ["b.tif", "a.tif"]
    for entry in queue.ready():
        assert queue.predicted(entry, queue.seen(entry))
    assert queue.ready() == []
    first.write_bytes(b"rewritten")  # the same name written again: predicted again, its outputs redone
    queue.scan()
    clock.now = 8.0
    ready = queue.ready()
    assert [e.path.name for e in ready] == ["b.tif"] and queue.was_predicted(ready[0])


def test_the_files_still_settling_are_listed_in_arrival_order(tmp_path):
    clock = Clock()
    queue = ArrivalQueue(tmp_path, settle_s=2.0, clock=clock)
    (tmp_path / "b.tif").write_bytes(b"x")
    queue.scan()
    clock.now = 1.0
    (tmp_path / "a.tif").write_bytes(b"y")
    (tmp_path / "c.tif.part").write_bytes(b"z")
    queue.scan()
    assert [e.path.name for e in queue.settling()] == ["b.tif", "a.tif"]
    clock.now = 2.5  # b.tif has settled: it is ready, no longer settling
    assert [e.path.name for e in queue.settling()] == ["a.tif"] and len(queue.settling()) == queue.pending()


def test_twenty_images_arriving_slowly_are_each_predicted_once_from_the_whole_file(tmp_path, unet_package):
    source, folder, out = tmp_path / "prepared", tmp_path / "microscope", tmp_path / "out"
    folder.mkdir()
    for i in range(20):
        write_field(source / f"field_{i:02d}.tif", seed=i)
    watch = _watch(folder, out, unet_package.path)
    try:
        subprocess.run([sys.executable, "-c", WRITER, str(source), str(folder)], check=True, timeout=120)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sum(r["status"] == "done" for r in _rows(out)) < 20:
            time.sleep(0.3)
    finally:
        watch.send_signal(signal.SIGINT)
        _, stderr = watch.communicate(timeout=60)
    assert watch.returncode == 0, stderr
    lines = stderr.splitlines()  # each image read once, whole: no failed read, no second prediction
    assert sorted(line.split(" × ")[0] for line in lines if line.startswith(("done:", "failed:"))) == [
        f"done: field_{i:02d}.tif" for i in range(20)]
    rows = _rows(out)
    assert sorted(Path(r["input"]).name for r in rows) == [f"field_{i:02d}.tif" for i in range(20)]
    assert {r["status"] for r in rows} == {"done"}, stderr
    assert not list(folder.glob("*.part"))
    for i in range(20):
        output = out / f"field_{i:02d}__test-unet.ome.tif"
        recorded = read_provenance(output)["inputs"][0]["sha256"]
        assert recorded == _sha256(folder / f"field_{i:02d}.tif")  # predicted from the complete file
    written = {p: p.stat().st_mtime_ns for p in out.glob("*.ome.tif")}

    again = _watch(folder, out, unet_package.path, "--stop-when-idle", "0.05")
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    assert {r["status"] for r in _rows(out)} == {"skipped"}
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.ome.tif")} == written


def test_a_file_that_fails_gets_its_sentence_and_the_watch_goes_on(tmp_path, unet_package):
    folder, out = tmp_path / "microscope", tmp_path / "out"
    folder.mkdir()
    (folder / "broken.tif").write_bytes(b"II*\x00 not really a TIFF")
    write_field(folder / "good.tif", seed=3)
    watch = _watch(folder, out, unet_package.path, "--stop-when-idle", "0.05")
    _, stderr = watch.communicate(timeout=120)
    assert watch.returncode == 1
    status = {Path(r["input"]).name: (r["status"], r["error"]) for r in _rows(out)}
    assert status["good.tif"] == ("done", "")
    assert status["broken.tif"][0] == "failed" and status["broken.tif"][1].endswith(".")
    assert "Traceback" not in stderr and "failed: broken.tif" in stderr


def test_a_missing_folder_is_one_sentence(tmp_path, unet_package):
    watch = _watch(tmp_path / "nowhere", tmp_path / "out", unet_package.path)
    _, stderr = watch.communicate(timeout=60)
    assert watch.returncode == 1
    assert [line for line in stderr.splitlines() if line.startswith("error:")] == [
        f"error: {tmp_path / 'nowhere'} is not a folder; give the folder the microscope writes into."]
