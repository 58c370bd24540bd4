"""The watch worker: ``Backend.run_watch`` in a ``GeneratorWorker``, re-emitted as signals.

As with batch export, "Stop" finishes the current file and "Cancel" abandons it; both are flags
passed to the watch (not a closed generator), so it ends with its report written. A finished job's
written prediction is read back here, on the worker thread, as a ``SavedResult`` for the window.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from PySide6.QtCore import Signal

from labelfree_app.errors import LabelFreeError
from labelfree_app.gui.batch.worker import JobsWorker
from labelfree_app.gui.streamed_run import saved_result_of

_log = logging.getLogger(__name__)


class WatchWorker(JobsWorker):
    """Consumes the watch's event generator off the GUI thread."""

    waiting = Signal(object)  # batch.watch.Waiting: the files still settling, a problem sentence
    jobStarted = Signal(str, str)  # input path, model id
    jobProgress = Signal(str, str, int, int, str)  # input path, model id, done, total, stage
    jobFinished = Signal(object, object)  # BatchRow, SavedResult of a done job (else None)
    watchStopped = Signal(object)  # batch.watch.WatchStopped
    # errored(str, bool) and finished(str) come from GeneratorWorker.
    what = "watching a folder"

    def __init__(self, backend: Any, folder: Path, models: Sequence[str], out_dir: Path, settings: dict[str, Any],
                 *, settle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(self._events, thread_name="labelfree-watch", clock=clock)
        self._backend = backend
        self._args = (Path(folder), list(models), Path(out_dir), dict(settings))
        self._settle_s = float(settle_s)

    def _events(self) -> Iterator[Any]:
        folder, models, out_dir, settings = self._args
        return self._backend.run_watch(folder, models, out_dir, settings, settle_s=self._settle_s,
                                       should_stop=self._stop.is_set, should_cancel=self._abandon.is_set)

    def handle(self, event: Any) -> None:
        from labelfree_app.batch import JobFinished, JobStarted
        from labelfree_app.batch.local import JobProgress
        from labelfree_app.batch.watch import Waiting, WatchStopped

        if isinstance(event, Waiting):
            self.waiting.emit(event)
        elif isinstance(event, JobStarted):
            self.jobStarted.emit(str(event.job.input.path), event.job.model.id)
        elif isinstance(event, JobProgress):
            progress = event.progress
            if self.progress_due(progress):
                self.jobProgress.emit(str(event.job.input.path), event.job.model.id, progress.done, progress.total,
                                      progress.stage)
        elif isinstance(event, JobFinished):
            self.jobFinished.emit(event.row, _landed(event.row))
        elif isinstance(event, WatchStopped):
            self.watchStopped.emit(event)


def _landed(row: Any) -> Any:
    """The ``SavedResult`` of a job that wrote its prediction now (None when skipped or failed, or
    when the written file cannot be read back: the table still says it is done)."""
    if row.status != "done" or not row.outputs:
        return None
    try:
        return saved_result_of(row)
    except (LabelFreeError, OSError, ValueError) as exc:
        _log.warning("could not read back %s: %s", row.outputs[0], exc)
        return None
