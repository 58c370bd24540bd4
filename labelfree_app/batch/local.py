"""Running a batch plan in this process, as a generator of events (the CLI and the GUI consume it).

The report is rewritten every couple of seconds and at the end, so even a killed batch leaves a
nearly current report, and every output is written atomically, so it leaves no partial image. A job's files
are written on a thread while the network runs on the next job (``batch.writer``; its row and event follow
when they are written, in order). ``should_stop`` is checked between jobs (stop after the current file);
``should_cancel`` inside a job (GUI cancel: that job writes nothing and is reported as cancelled).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Generator, Iterator

from labelfree_app.batch.lock import BatchLock
from labelfree_app.batch.plan import BatchJob, BatchPlan
from labelfree_app.batch.prefetch import InputPrefetch
from labelfree_app.batch.process import FATAL_ERRORS, BatchOptions, EngineCache, remove_stale_temps, start_job
from labelfree_app.batch.report import (BatchRow, carry_forward, read_report, recorded_files, summarize,
                                        write_report)
from labelfree_app.batch.writer import WriteBehind
from labelfree_app.core.drive import relay
from labelfree_app.core.events import Progress
from labelfree_app.errors import LabelFreeError, OutputNotWritableError
from labelfree_app.io.atomic import check_writable_folder, ensure_free_space


REPORT_INTERVAL_S = 2.0  # a killed batch's report lags by at most this; the outputs are the truth
PREFETCH = True  # read the next input while the network runs (benchmarks/bench_batch_throughput.py turns it off)
WRITE_BEHIND = True  # write a job's files on a thread while the network runs on the next (batch/writer.py)


@dataclass(frozen=True)
class JobStarted:
    job: BatchJob
    position: int  # 0-based among this run's jobs
    total: int


@dataclass(frozen=True)
class JobProgress:
    """Progress inside the current job (tiles, sampling steps)."""

    job: BatchJob
    progress: Progress


@dataclass(frozen=True)
class JobFinished:
    row: BatchRow
    finished: int  # jobs finished so far in this run
    total: int
    eta_seconds: float | None


@dataclass(frozen=True)
class BatchDone:
    rows: list[BatchRow]
    report: tuple[Path, Path]
    stopped: bool  # by the user (between or inside jobs)
    fatal: str  # a message when a disk or folder problem stopped the batch, else ""

    @property
    def counts(self) -> dict[str, int]:
        return summarize(self.rows)

    @property
    def ok(self) -> bool:
        return not self.fatal and all(row.ok for row in self.rows if row.status != "not run") and not self.stopped


BatchEvent = JobStarted | JobProgress | JobFinished | BatchDone


def prepare_output_folder(out_dir: Path) -> None:
    """Create the output folder and fail fast, in one sentence, when it cannot be written."""
    blocking = next((p for p in (out_dir, *out_dir.parents) if os.path.lexists(p) and not os.path.isdir(p)), None)
    if blocking is not None:
        raise OutputNotWritableError(
            f"The output folder {out_dir} cannot be used because {blocking} is a file, not a folder; "
            "choose another output folder.", path=out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputNotWritableError(
            f"The output folder {out_dir} cannot be created ({exc.strerror or exc}); "
            "choose another folder.", path=out_dir) from None
    check_writable_folder(out_dir)
    ensure_free_space(out_dir, 0)  # a kernel folder (/proc, /sys) or a read-only disk fails here, before any job


class Eta:
    """Remaining time from the mean time of the jobs that did real work (skips are nearly free)."""

    def __init__(self) -> None:
        self.worked: list[float] = []

    def add(self, row: BatchRow) -> None:
        if row.status in ("done", "failed"):
            self.worked.append(row.seconds)

    def remaining(self, jobs_left: int) -> float | None:
        if not self.worked:
            return None
        return sum(self.worked) / len(self.worked) * jobs_left


def report_extra(plan: BatchPlan, options: BatchOptions) -> dict[str, Any]:
    settings = options.settings
    return {
        "output_folder": str(plan.out_dir),
        "shard": plan.shard.label if plan.shard else None,
        "inputs_in_other_shards": plan.other_shards,
        "models": [{"id": m.id, "path": m.path, "sha256": m.sha256} for m in plan.models],
        "settings": {k: getattr(settings, k) for k in ("channel", "samples", "steps", "sampler", "seed", "tta",
                                                       "device", "precision", "scale", "pixel_size_um")} | {"overwrite": options.overwrite,
                                                                     "save_steps": options.save_steps,
                                                                     "target_channel": options.target_channel},
    }


def run_batch(plan: BatchPlan, options: BatchOptions, *, should_stop: Callable[[], bool] = lambda: False,
              should_cancel: Callable[[], bool] = lambda: False,
              engines: EngineCache | None = None) -> Generator[BatchEvent, None, BatchDone]:
    """Run every job of ``plan`` here; yields events, the last one is ``BatchDone``.

    Holds the output folder's lock (``BatchLock``) throughout: a second batch on the same folder
    is refused, and the lock goes when this generator ends, fails or is closed.
    """
    with holding_output_folder(plan, options):
        return (yield from _run_jobs(plan, options, should_stop, should_cancel, engines or EngineCache()))


@contextlib.contextmanager
def holding_output_folder(plan: BatchPlan, options: BatchOptions) -> Iterator[None]:
    """Create the output folder and hold its lock while the batch runs (local or on a cluster); the
    temp files of a killed batch that held it are removed first."""
    prepare_output_folder(plan.out_dir)
    lock = BatchLock(plan.out_dir, plan.report_name)
    dead_owner = lock.acquire()
    try:
        if dead_owner is not None:  # a killed batch held the folder: its temp files are nobody's now
            reports = [plan.out_dir / f"{plan.report_name}{suffix}" for suffix in (".csv", ".json")]
            remove_stale_temps([*reports, *(p for job in plan.jobs for p in job.outputs(plan.out_dir, options.format).all())],
                               older_than_s=0)
        yield
    finally:
        lock.release()


def _run_jobs(plan: BatchPlan, options: BatchOptions, should_stop: Callable[[], bool],
              should_cancel: Callable[[], bool], engines: EngineCache) -> Generator[BatchEvent, None, BatchDone]:
    previous = read_report(plan.out_dir / f"{plan.report_name}.json")
    recorded = recorded_files(previous)
    rows = [BatchRow(index=j.index, input=str(j.input.path), key=j.input.key, model=j.model.id) for j in plan.jobs]
    extra = report_extra(plan, options)
    eta = Eta()
    stopped, fatal = False, ""
    total = len(plan.jobs)
    last_report = time.monotonic()
    position, run = -1, None
    prefetch = InputPrefetch(plan.out_dir, options)
    writer = WriteBehind() if WRITE_BEHIND else None
    cut_short: int | None = None  # the job whose writing an interruption stopped (else the running job is)

    def finished(position: int, finish: Callable[[], BatchRow]) -> Generator[BatchEvent, None, bool]:
        """Record a job's row once its files are written; False when the batch must stop (a fatal error)."""
        nonlocal fatal, last_report, cut_short
        try:
            rows[position] = finish()
        except FATAL_ERRORS as exc:
            rows[position].status, rows[position].error = "failed", str(exc)
            fatal = fatal or str(exc)
            return False
        except BaseException:
            cut_short = position
            raise
        carry_forward([rows[position]], previous)
        eta.add(rows[position])
        if time.monotonic() - last_report >= REPORT_INTERVAL_S:
            try:
                write_report(rows, plan.out_dir, plan.report_name, extra=extra)
            except LabelFreeError as exc:
                fatal = fatal or str(exc)
                return False
            last_report = time.monotonic()
        yield JobFinished(rows[position], position + 1, total, eta.remaining(total - position - 1))
        return True

    try:
        for position, job in enumerate(plan.jobs):
            if should_stop():
                stopped = True
                break
            yield JobStarted(job, position, total)
            image = prefetch.take(job)
            if PREFETCH and position + 1 < total:
                prefetch.ahead(plan.jobs[position + 1])
            run = start_job(job, plan.out_dir, options, engines, recorded.get((job.input.key, job.model.id)),
                            image=image)
            try:
                finish = yield from relay(run, partial(job_progress, job),
                                          before_step=partial(raise_if_cancelled, should_cancel))
            except Cancelled:
                run.close()
                rows[position].status, rows[position].note = "cancelled", "cancelled by the user; nothing written"
                stopped = True
                break
            except FATAL_ERRORS as exc:
                rows[position].status, rows[position].error = "failed", str(exc)
                fatal = str(exc)
                break
            if writer is None:
                if not (yield from finished(position, finish)):
                    break
                continue
            written = writer.collect()  # the previous job's files, written while this one ran
            if written is not None and not (yield from finished(*written)):
                break
            writer.submit(position, finish)
        if writer is not None and (written := writer.collect()) is not None:
            yield from finished(*written)
    except BaseException:  # Ctrl-C, or the consumer closed the batch: the report still says where it stopped
        prefetch.close()
        if run is not None:
            run.close()
        if writer is not None:  # the write in flight completes (its files are whole) and keeps its row
            with contextlib.suppress(Exception):
                if (written := writer.collect()) is not None:
                    rows[written[0]] = written[1]()
                    carry_forward([rows[written[0]]], previous)
            writer.close()
        position = position if cut_short is None else cut_short
        if position >= 0 and rows[position].status == "not run":
            rows[position].status, rows[position].note = "cancelled", "interrupted; run the batch again to finish it"
        with contextlib.suppress(LabelFreeError):
            write_report(rows, plan.out_dir, plan.report_name, extra=extra)
        raise
    prefetch.close()
    if writer is not None:
        writer.close()
    report = (plan.out_dir / f"{plan.report_name}.csv", plan.out_dir / f"{plan.report_name}.json")
    try:
        report = write_report(rows, plan.out_dir, plan.report_name, extra=extra)
    except LabelFreeError as exc:
        fatal = fatal or str(exc)
    done = BatchDone(rows, report, stopped, fatal)
    yield done
    return done


class Cancelled(Exception):
    """The user cancelled the job in progress."""


def job_progress(job: BatchJob, event: Any) -> JobProgress | None:
    """A job's engine progress as a batch event; its other events stay inside the job."""
    return JobProgress(job, event) if isinstance(event, Progress) else None


def raise_if_cancelled(should_cancel: Callable[[], bool]) -> None:
    if should_cancel():
        raise Cancelled()
