"""The batch export worker: ``Backend.run_batch`` in a ``GeneratorWorker``, re-emitted as signals.

"Stop" finishes the current file and then stops; "Cancel" abandons the current file at once
(nothing is written for it). Either way the batch ends with its report written, so both are
passed to the batch as flags rather than closing the generator.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from PySide6.QtCore import Signal

from labelfree_app.gui.generator_worker import GeneratorWorker

PROGRESS_INTERVAL_S = 0.1


class JobsWorker(GeneratorWorker):
    """A worker over many jobs (batch, watch): Stop and Cancel are flags the jobs' generator reads, so
    it ends with its report written; job progress is passed on at most every ``PROGRESS_INTERVAL_S``."""

    def __init__(self, make: Callable[[], Iterator[Any]], *, thread_name: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(make, thread_name=thread_name)
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._clock = clock
        self._last_progress = float("-inf")

    @property
    def stopping(self) -> bool:
        """Stop or Cancel was asked for."""
        return self._stop.is_set()

    def stop_after_current(self) -> None:
        """Finish the file in progress, then stop and write the report (thread-safe)."""
        self._stop.set()

    def cancel(self) -> None:
        """Abandon the file in progress now, then stop and write the report (thread-safe)."""
        self._stop.set()
        self._abandon.set()

    def progress_due(self, progress: Any) -> bool:
        """Whether to pass this job progress on (the last step always; else not more often than the interval)."""
        now = self._clock()
        if progress.done >= progress.total or now - self._last_progress >= PROGRESS_INTERVAL_S:
            self._last_progress = now
            return True
        return False


class BatchWorker(JobsWorker):
    """Consumes the batch event generator off the GUI thread."""

    jobStarted = Signal(str, int, int)  # "file × model", position, total
    jobProgress = Signal(int, int, str)  # done, total, stage
    jobFinished = Signal(object, int, int, object)  # BatchRow, finished, total, eta seconds or None
    batchDone = Signal(object)  # BatchDone
    # errored(str, bool) and finished(str) come from GeneratorWorker.
    what = "batch export"

    def __init__(self, backend: Any, inputs: Sequence[Path], models: Sequence[str], out_dir: Path,
                 settings: dict[str, Any], *, overwrite: bool, target_channel: int | str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(self._events, thread_name="labelfree-batch", clock=clock)
        self._backend = backend
        self._args = (list(inputs), list(models), Path(out_dir), dict(settings))
        self._overwrite = overwrite
        self._target_channel = target_channel

    def _events(self) -> Iterator[Any]:
        inputs, models, out_dir, settings = self._args
        return self._backend.run_batch(inputs, models, out_dir, settings, overwrite=self._overwrite,
                                       target_channel=self._target_channel, should_stop=self._stop.is_set,
                                       should_cancel=self._abandon.is_set)

    def handle(self, event: Any) -> None:
        from labelfree_app.batch import BatchDone, JobFinished, JobStarted
        from labelfree_app.batch.local import JobProgress

        if isinstance(event, JobStarted):
            self.jobStarted.emit(f"{event.job.input.path.name} × {event.job.model.id}", event.position, event.total)
        elif isinstance(event, JobProgress):
            progress = event.progress
            if self.progress_due(progress):
                self.jobProgress.emit(progress.done, progress.total, progress.stage)
        elif isinstance(event, JobFinished):
            self.jobFinished.emit(event.row, event.finished, event.total, event.eta_seconds)
        elif isinstance(event, BatchDone):
            self.batchDone.emit(event)
