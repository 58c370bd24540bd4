"""A job's files are written on a thread while the network runs on the next job: the same files and rows
in the same order as written in line, a failed write is its own job's row with its sentence, and a stop,
cancel or close mid-batch leaves no partial file."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from labelfree_app.batch import BatchOptions, local, plan_batch, process, run_batch
from labelfree_app.batch.local import JobProgress, JobStarted
from labelfree_app.batch.plan import resolve_models
from labelfree_app.core.engine import PredictSettings
from labelfree_app.errors import DiskFullError, ImageWriteError
from labelfree_app.io import read_image, read_provenance


def _options(**kwargs) -> BatchOptions:
    return BatchOptions(settings=PredictSettings(channel=0), **kwargs)


def _outputs(out) -> dict[str, tuple[bytes, dict]]:
    """Each written file's pixels and provenance (less the run's seconds and the time it was written)."""
    found = {}
    for path in sorted(out.rglob("*.ome.tif")):
        provenance = {k: v for k, v in read_provenance(path).items() if k not in ("seconds", "written_at")}
        found[path.relative_to(out).as_posix()] = (np.asarray(read_image(path).data).tobytes(), provenance)
    return found


def _rows(done, out) -> list[tuple]:
    """The report rows, less the seconds (and the files' sizes, whose provenance holds the seconds)."""
    return [(r.input, r.model, r.status, r.error, r.note, [Path(p).relative_to(out) for p in r.outputs],
             {name: {k: v for k, v in facts.items() if k != "bytes"} for name, facts in r.files.items()},
             r.expected_r, r.trust) for r in done.rows]


@pytest.fixture()
def writes(monkeypatch):
    """The inputs whose files were written, on which thread; ``fail`` maps an input name to the error its write raises,
    ``delay`` slows every write."""
    seen: dict = {"calls": [], "fail": {}, "delay": 0.0}
    real = process.write_result

    def spy(result, manifest, inputs, paths, **kwargs):
        name = inputs[0].name
        seen["calls"].append((name, threading.current_thread().name))
        time.sleep(seen["delay"])
        if name in seen["fail"]:
            raise seen["fail"][name]
        return real(result, manifest, inputs, paths, **kwargs)

    monkeypatch.setattr(process, "write_result", spy)
    return seen


def _no_partial_files(out) -> bool:
    return not list(out.rglob(".*.part"))


def test_files_are_written_on_a_thread_and_match_the_files_written_in_line(tmp_path, unet_package, fields_dir,
                                                                           writes, monkeypatch):
    models = resolve_models([str(unet_package.path)])
    behind, in_line = tmp_path / "behind", tmp_path / "in_line"
    *_, done = run_batch(plan_batch([fields_dir], models, behind), _options(trust_map=True))
    assert [r.status for r in done.rows] == ["done"] * 3
    assert all(thread.startswith("labelfree-writer") for _, thread in writes["calls"])
    monkeypatch.setattr(local, "WRITE_BEHIND", False)
    *_, plain = run_batch(plan_batch([fields_dir], models, in_line), _options(trust_map=True))
    assert [thread for _, thread in writes["calls"][3:]] == [threading.current_thread().name] * 3
    assert _outputs(behind) == _outputs(in_line) and len(_outputs(behind)) >= 3
    assert _rows(done, behind) == _rows(plain, in_line)


def test_finished_events_come_in_order_each_after_its_files_exist(tmp_path, unet_package, fields_dir):
    models = resolve_models([str(unet_package.path)])
    out = tmp_path / "out"
    finished = []
    for event in run_batch(plan_batch([fields_dir], models, out), _options()):
        if isinstance(event, local.JobFinished):
            finished.append((event.finished, all(Path(p).is_file() for p in event.row.outputs)))
    assert finished == [(1, True), (2, True), (3, True)]


def test_a_write_that_fails_reports_that_files_sentence_and_the_batch_goes_on(tmp_path, unet_package, fields_dir,
                                                                              writes, monkeypatch):
    sentence = "The prediction of b.tif could not be written (test); nothing was left behind."
    writes["fail"]["b.tif"] = ImageWriteError(sentence)
    models = resolve_models([str(unet_package.path)])
    *_, done = run_batch(plan_batch([fields_dir], models, tmp_path / "behind"), _options())
    monkeypatch.setattr(local, "WRITE_BEHIND", False)
    *_, plain = run_batch(plan_batch([fields_dir], models, tmp_path / "in_line"), _options())
    for result in (done, plain):
        assert [r.status for r in result.rows] == ["done", "failed", "done"]
        assert result.rows[1].error == sentence and result.rows[1].outputs == []
    assert sorted(_outputs(tmp_path / "behind")) == sorted(_outputs(tmp_path / "in_line"))
    assert "b__test-unet.ome.tif" not in _outputs(tmp_path / "behind")


def test_a_full_disk_while_writing_stops_the_batch_after_that_file(tmp_path, unet_package, fields_dir, writes):
    writes["fail"]["b.tif"] = DiskFullError("Not enough free space for b.tif; free some space.")
    models = resolve_models([str(unet_package.path)])
    out = tmp_path / "out"
    *_, done = run_batch(plan_batch([fields_dir], models, out), _options())
    assert [r.status for r in done.rows] == ["done", "failed", "not run"]
    assert done.fatal == "Not enough free space for b.tif; free some space." == done.rows[1].error
    assert sorted(_outputs(out)) == ["a__test-unet.ome.tif"] and _no_partial_files(out)


def test_stop_mid_batch_finishes_the_write_in_flight_and_leaves_no_partial_file(tmp_path, unet_package, fields_dir,
                                                                                writes):
    writes["delay"] = 0.3  # a's write is still in flight while b runs
    models = resolve_models([str(unet_package.path)])
    out = tmp_path / "out"
    stop = {"now": False}
    for event in run_batch(plan_batch([fields_dir], models, out), _options(), should_stop=lambda: stop["now"]):
        if isinstance(event, JobStarted) and event.position == 1:
            stop["now"] = True
        done = event
    assert [r.status for r in done.rows] == ["done", "done", "not run"] and done.stopped
    assert sorted(_outputs(out)) == ["a__test-unet.ome.tif", "b__test-unet.ome.tif"] and _no_partial_files(out)


def test_cancel_and_close_mid_batch_keep_the_write_in_flight_whole(tmp_path, unet_package, fields_dir, writes):
    writes["delay"] = 0.3
    models = resolve_models([str(unet_package.path)])
    cancel = {"now": False}
    out = tmp_path / "cancel"
    for event in run_batch(plan_batch([fields_dir], models, out), _options(), should_cancel=lambda: cancel["now"]):
        if isinstance(event, JobStarted) and event.position == 1:
            cancel["now"] = True
        done = event
    assert [r.status for r in done.rows] == ["done", "cancelled", "not run"]
    assert sorted(_outputs(out)) == ["a__test-unet.ome.tif"] and _no_partial_files(out)

    out = tmp_path / "close"  # the GUI closing the batch, or Ctrl-C, while b runs and a is being written
    events = run_batch(plan_batch([fields_dir], models, out), _options())
    for event in events:
        if isinstance(event, JobProgress) and event.job.index == 1:
            events.close()
            break
    assert sorted(_outputs(out)) == ["a__test-unet.ome.tif"] and _no_partial_files(out)
    report = (out / "batch_report.csv").read_text()
    assert "done" in report and "interrupted" in report
    assert not [t for t in threading.enumerate() if t.name.startswith("labelfree-writer")]
