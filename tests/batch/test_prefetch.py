"""The next input is read while the current job runs: same rows in the same order, same files,
resume and cancel unchanged, and nothing read ahead for a job a resume will skip."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from labelfree_app.batch import BatchOptions, local, plan_batch, run_batch
from labelfree_app.batch import prefetch as prefetch_module
from labelfree_app.batch.local import JobStarted
from labelfree_app.batch.plan import resolve_models
from labelfree_app.core.engine import PredictSettings
from labelfree_app.io import read_image, read_provenance


def _options(**kwargs) -> BatchOptions:
    return BatchOptions(settings=PredictSettings(channel=0), **kwargs)


@pytest.fixture()
def reads(monkeypatch):
    """Which inputs were read ahead, on which thread."""
    seen: list[tuple[str, str]] = []
    real = prefetch_module._read_decoded

    def spy(job, options):
        seen.append((job.input.path.name, threading.current_thread().name))
        return real(job, options)

    monkeypatch.setattr(prefetch_module, "_read_decoded", spy)
    return seen


def _outputs(out) -> dict[str, tuple[bytes, dict]]:
    """Each written prediction's pixels and provenance (less the run's seconds and the time it was written,
    which differ every run)."""
    found = {}
    for path in sorted(out.iterdir()):
        if path.name.endswith(".ome.tif"):
            provenance = {k: v for k, v in read_provenance(path).items() if k not in ("seconds", "written_at")}
            found[path.name] = (np.asarray(read_image(path).data).tobytes(), provenance)
    return found


def test_prefetch_reads_the_next_input_on_a_thread_and_keeps_order_and_bytes(tmp_path, unet_package, fields_dir,
                                                                             reads, monkeypatch):
    models = resolve_models([str(unet_package.path)])
    out = tmp_path / "out"
    *_, done = run_batch(plan_batch([fields_dir], models, out), _options())
    assert [r.status for r in done.rows] == ["done"] * 3
    assert [name for name, _ in reads] == ["b.tif", "c.tif"]  # the first is read by its job
    assert all(thread.startswith("labelfree-prefetch") for _, thread in reads)
    with_prefetch = _outputs(out)
    monkeypatch.setattr(local, "PREFETCH", False)
    *_, plain = run_batch(plan_batch([fields_dir], models, out), _options(overwrite=True))
    assert [r.input for r in done.rows] == [r.input for r in plain.rows]
    assert _outputs(out) == with_prefetch  # the same pixels and provenance


def test_a_resume_reads_nothing_ahead_for_jobs_it_skips(tmp_path, unet_package, fields_dir, reads):
    models = resolve_models([str(unet_package.path)])
    out = tmp_path / "out"
    run_batch_done = list(run_batch(plan_batch([fields_dir], models, out), _options()))[-1]
    assert run_batch_done.ok
    reads.clear()
    *_, again = run_batch(plan_batch([fields_dir], models, out), _options())
    assert [r.status for r in again.rows] == ["skipped"] * 3 and reads == []


def test_an_input_that_fails_to_read_ahead_fails_in_its_own_job_with_its_sentence(tmp_path, unet_package,
                                                                                 fields_dir):
    (fields_dir / "b.tif").write_bytes(b"not a tiff")
    models = resolve_models([str(unet_package.path)])
    *_, done = run_batch(plan_batch([fields_dir], models, tmp_path / "out"), _options())
    assert [r.status for r in done.rows] == ["done", "failed", "done"]
    assert "b.tif" in done.rows[1].error


def test_cancel_while_the_next_input_is_read_writes_nothing_for_it_and_stops(tmp_path, unet_package, fields_dir,
                                                                             reads):
    models = resolve_models([str(unet_package.path)])
    out = tmp_path / "out"
    cancel = {"now": False}
    events = run_batch(plan_batch([fields_dir], models, out), _options(), should_cancel=lambda: cancel["now"])
    seen = []
    for event in events:
        seen.append(event)
        if isinstance(event, JobStarted) and event.position == 1:
            cancel["now"] = True  # b's input was prefetched during a; b is cancelled, c never runs
    done = seen[-1]
    assert [r.status for r in done.rows] == ["done", "cancelled", "not run"]
    assert sorted(_outputs(out)) == ["a__test-unet.ome.tif"]
    assert [name for name, _ in reads][:1] == ["b.tif"]  # c's read, queued during b, is dropped
    assert not [t for t in threading.enumerate() if t.name.startswith("labelfree-prefetch")]


def test_a_decoded_input_is_an_array_in_memory(tmp_path, unet_package, fields_dir):
    models = resolve_models([str(unet_package.path)])
    job = plan_batch([fields_dir / "a.tif"], models, tmp_path / "out").jobs[0]
    image = prefetch_module._read_decoded(job, _options())
    assert isinstance(image.data, np.ndarray)
