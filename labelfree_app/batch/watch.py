"""Watching a folder: each new image is predicted once it is complete, in arrival order, with the
batch's report and resume semantics (``labelfree watch``, File ▸ Watch folder…).

File-system events (``watchdog``) wake the loop as soon as something changes; the folder is also
polled every ``poll_s`` seconds, because events do not arrive from network shares. A file is read
only once it has settled (``arrivals.ArrivalQueue``); a job that fails gets its sentence in the
report and the watch goes on; the file is tried again if it changes. A restart skips what was
done (the outputs are verified as a batch's are).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Generator, Iterator, Sequence

from labelfree_app.batch.arrivals import ArrivalQueue
from labelfree_app.batch.local import (Cancelled, JobFinished, JobStarted, holding_output_folder, job_progress,
                                       raise_if_cancelled, report_extra)
from labelfree_app.batch.plan import REPORT_NAME, BatchInput, BatchJob, BatchPlan, ModelRef
from labelfree_app.batch.process import FATAL_ERRORS, BatchOptions, EngineCache, run_job
from labelfree_app.batch.report import BatchRow, carry_forward, read_report, recorded_files, write_report
from labelfree_app.core.drive import relay
from labelfree_app.errors import FileAccessError, LabelFreeError


DEFAULT_SETTLE_S = 2.0  # a file is complete once unchanged this long (every door's default)


@dataclass(frozen=True)
class Waiting:
    """Nothing to predict now: ``settling`` files are still being written (``files``, in arrival
    order); ``problem`` is a sentence when the folder could not be read this time (a share that went
    away: the watch keeps trying)."""

    settling: int
    problem: str = ""
    files: tuple[Path, ...] = ()


@dataclass(frozen=True)
class WatchStopped:
    rows: list[BatchRow]
    report: tuple[Path, Path] | None
    fatal: str  # a disk or folder problem that ended the watch, else ""


WatchEvent = Waiting | JobStarted | JobFinished | WatchStopped


def watch_folder(folder: Path, models: Sequence[ModelRef], out_dir: Path, options: BatchOptions, *,
                 should_stop: Callable[[], bool] = lambda: False,
                 should_cancel: Callable[[], bool] = lambda: False, settle_s: float = DEFAULT_SETTLE_S,
                 poll_s: float = 1.0, events: bool = True, engines: EngineCache | None = None) -> Generator[WatchEvent, None, WatchStopped]:
    """Predict every image that arrives under ``folder`` with each of ``models`` into ``out_dir``
    until ``should_stop()``; yields events, the last one is ``WatchStopped``."""
    folder, out_dir = Path(folder), Path(out_dir)
    if not folder.is_dir():
        raise FileAccessError(f"{folder} is not a folder; give the folder the microscope writes into.", path=folder)
    plan = BatchPlan([], out_dir, models=list(models))
    with holding_output_folder(plan, options), _wake_on_changes(folder, enabled=events) as woken:
        session = _Session(plan, options, engines or EngineCache())
        queue = ArrivalQueue(folder, exclude=out_dir, settle_s=settle_s)
        fatal = ""
        try:
            while not should_stop() and not fatal:
                problem = ""
                try:
                    queue.scan()
                except FileAccessError as exc:
                    problem = str(exc)
                ready = [] if problem else queue.ready()
                for entry in ready:
                    if should_stop():
                        break
                    started, redo = queue.seen(entry), queue.was_predicted(entry)
                    for model in models:
                        try:
                            fatal = yield from session.run(entry, model, redo, should_cancel)
                        except Cancelled:
                            return (yield from session.stop(""))
                        if fatal:
                            break
                    queue.predicted(entry, started)
                    if fatal:
                        break
                if not ready and not fatal:
                    yield Waiting(queue.pending(), problem, tuple(e.path for e in queue.settling()))
                    woken.clear()
                    wait = queue.next_settling_in()
                    woken.wait(poll_s if wait is None else min(poll_s, max(wait, 0.05)))
        except BaseException:  # Ctrl-C, or the consumer closed the watch: the report still says where it stopped
            session.save()
            raise
        return (yield from session.stop(fatal))


class _Session:
    """The report rows of one watch (those of earlier runs kept), and running one job into them."""

    def __init__(self, plan: BatchPlan, options: BatchOptions, engines: EngineCache) -> None:
        self.plan, self.options, self.engines = plan, options, engines
        self.previous = read_report(plan.out_dir / f"{REPORT_NAME}.json")
        self.recorded = recorded_files(self.previous)
        self.rows: dict[tuple[str, str], BatchRow] = {(r.key, r.model): r for r in self.previous}
        self.extra = report_extra(plan, options) | {"watched": True}
        self.finished = 0

    def run(self, entry: BatchInput, model: ModelRef, redo: bool,
            should_cancel: Callable[[], bool]) -> Generator[Any, None, str]:
        """Predict one input with one model; returns a fatal sentence ("" when the watch goes on)."""
        key = (entry.key, model.id)
        before = self.rows.get(key)
        job = BatchJob(before.index if before else len(self.rows), entry, model)
        options = replace(self.options, overwrite=True) if redo else self.options
        yield JobStarted(job, self.finished, self.finished + 1)
        run = run_job(job, self.plan.out_dir, options, self.engines, self.recorded.get(key))
        try:
            row = yield from relay(run, partial(job_progress, job), before_step=partial(raise_if_cancelled, should_cancel))
        except Cancelled:
            run.close()
            self.rows[key] = replace(BatchRow(job.index, str(entry.path), entry.key, model.id), status="cancelled",
                                     note="cancelled by the user; nothing written")
            raise
        except FATAL_ERRORS as exc:
            self.rows[key] = replace(BatchRow(job.index, str(entry.path), entry.key, model.id), status="failed",
                                     error=str(exc))
            return str(exc)
        carry_forward([row], self.previous)
        self.rows[key] = row
        self.finished += 1
        fatal = self.save()
        yield JobFinished(row, self.finished, self.finished, None)
        return fatal

    def save(self) -> str:
        """Write the report now; returns a sentence when it cannot be written."""
        try:
            write_report(self.rows.values(), self.plan.out_dir, REPORT_NAME, extra=self.extra)
        except LabelFreeError as exc:
            return str(exc)
        return ""

    def stop(self, fatal: str) -> Generator[WatchStopped, None, WatchStopped]:
        fatal = fatal or self.save()
        report = (self.plan.out_dir / f"{REPORT_NAME}.csv", self.plan.out_dir / f"{REPORT_NAME}.json")
        done = WatchStopped(sorted(self.rows.values(), key=lambda r: r.index), report, fatal)
        yield done
        return done


@contextlib.contextmanager
def _wake_on_changes(folder: Path, *, enabled: bool) -> Iterator[threading.Event]:
    """An event set whenever something under ``folder`` changes (watchdog's observer, where it can watch
    this folder); the loop polls anyway, so a folder without events is only slower to react."""
    woken = threading.Event()
    observer = None
    if enabled:
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer

            class _Wake(FileSystemEventHandler):
                def on_any_event(self, event: Any) -> None:
                    woken.set()

            observer = Observer()
            observer.schedule(_Wake(), str(folder), recursive=True)
            observer.start()
        except (ImportError, OSError):  # no watchdog, or no events for this file system: polling only
            observer = None
    try:
        yield woken
    finally:
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)
