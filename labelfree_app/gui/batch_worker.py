"""The batch export worker: runs ``Backend.run_batch`` in a QThread and re-emits its events.

"Stop" finishes the current file and then stops; "Cancel" abandons the current file at once
(nothing is written for it). Either way the batch ends with its report written.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from PySide6.QtCore import QObject, Signal, Slot

from labelfree_app.errors import LabelFreeError

_log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.1


class BatchWorker(QObject):
    """Consumes the batch event generator off the GUI thread."""

    jobStarted = Signal(str, int, int)  # "file × model", position, total
    jobProgress = Signal(int, int, str)  # done, total, stage
    jobFinished = Signal(object, int, int, object)  # BatchRow, finished, total, eta seconds or None
    batchDone = Signal(object)  # BatchDone
    errored = Signal(str, bool)  # sentence, is_user_error
    finished = Signal()

    def __init__(self, backend: Any, inputs: Sequence[Path], models: Sequence[str], out_dir: Path,
                 settings: dict[str, Any], *, overwrite: bool, target_channel: int | str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._backend = backend
        self._args = (list(inputs), list(models), Path(out_dir), dict(settings))
        self._overwrite = overwrite
        self._target_channel = target_channel
        self._stop = threading.Event()
        self._cancel = threading.Event()
        self._clock = clock
        self._last_progress = float("-inf")

    def stop_after_current(self) -> None:
        self._stop.set()

    def cancel(self) -> None:
        self._stop.set()
        self._cancel.set()

    @Slot()
    def run(self) -> None:
        from labelfree_app.batch import BatchDone, JobFinished, JobStarted
        from labelfree_app.batch.local import JobProgress

        try:
            inputs, models, out_dir, settings = self._args
            for event in self._backend.run_batch(inputs, models, out_dir, settings, overwrite=self._overwrite,
                                                 target_channel=self._target_channel, should_stop=self._stop.is_set, should_cancel=self._cancel.is_set):
                if isinstance(event, JobStarted):
                    self.jobStarted.emit(f"{event.job.input.path.name} × {event.job.model.id}", event.position,
                                         event.total)
                elif isinstance(event, JobProgress):
                    now = self._clock()
                    progress = event.progress
                    if progress.done >= progress.total or now - self._last_progress >= PROGRESS_INTERVAL_S:
                        self._last_progress = now
                        self.jobProgress.emit(progress.done, progress.total, progress.stage)
                elif isinstance(event, JobFinished):
                    self.jobFinished.emit(event.row, event.finished, event.total, event.eta_seconds)
                elif isinstance(event, BatchDone):
                    self.batchDone.emit(event)
        except LabelFreeError as exc:
            self.errored.emit(str(exc), True)
        except Exception as exc:  # logged in full, reported once
            _log.exception("batch export failed unexpectedly")
            self.errored.emit(f"{type(exc).__name__}: {exc}", False)
        finally:
            self.finished.emit()
