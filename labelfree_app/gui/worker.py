"""Workers that keep compute off the GUI thread.

``EventWorker`` is the prediction's ``GeneratorWorker``: it turns the engine's events into
``progress`` / ``preview`` / ``result`` signals, copies preview arrays (the engine reuses its
buffers) and sends at most one progress update per ``progress_interval_s`` (the last one always).
Previews are not throttled here: the engine already sends them at most every
``PredictSettings.preview_interval_s``. ``call_in_thread`` runs one function on the thread pool
(used to read files).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterator

import numpy as np
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from shiboken6 import isValid

from labelfree_app.core.events import Preview, Progress, PredictionResult
from labelfree_app.errors import LabelFreeError
from labelfree_app.gui.streamed_run import SavedResult
from labelfree_app.gui.generator_worker import CANCELLED, DONE, FAILED, GeneratorWorker

_log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.05

__all__ = ["CANCELLED", "DONE", "FAILED", "EventWorker", "call_in_thread"]


def _copy_preview(event: Preview) -> Preview:
    return Preview(event.kind, event.sample, event.step, event.total_steps, np.array(event.image, copy=True))


class EventWorker(GeneratorWorker):
    """Runs ``make_events()`` (the engine) and emits what it yields; ``finished`` says how it ended."""

    progress = Signal(object)  # Progress
    preview = Signal(object)  # Preview (a copy)
    result = Signal(object)  # PredictionResult, or SavedResult for a huge image streamed to a file
    what = "prediction"

    def __init__(
        self,
        make_events: Callable[[], Iterator[Any]],
        *,
        progress_interval_s: float = PROGRESS_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(make_events, thread_name="labelfree-prediction")
        self._progress_interval_s = progress_interval_s
        self._clock = clock
        self._last_progress_at = float("-inf")

    def handle(self, event: Any) -> None:
        if isinstance(event, Preview):
            self.preview.emit(_copy_preview(event))
        elif isinstance(event, Progress):
            now = self._clock()
            if event.done >= event.total or now - self._last_progress_at >= self._progress_interval_s:
                self._last_progress_at = now
                self.progress.emit(event)
        elif isinstance(event, (PredictionResult, SavedResult)):
            self.result.emit(event)
        else:
            _log.debug("ignoring unknown event %r", type(event).__name__)


class _CallSignals(QObject):
    done = Signal(object)
    failed = Signal(object)


class _Call(QRunnable):
    def __init__(self, fn: Callable[[], Any], signals: _CallSignals) -> None:
        super().__init__()
        self._fn = fn
        self._signals = signals

    def run(self) -> None:
        try:
            value = self._fn()
        except Exception as exc:  # handed to the GUI thread, which decides how to report it
            if not isinstance(exc, LabelFreeError):
                _log.exception("background call failed")
            self._signals.failed.emit(exc)
            return
        self._signals.done.emit(value)


_live_calls: set[_CallSignals] = set()


def call_in_thread(
    fn: Callable[[], Any], on_done: Callable[[Any], None], on_failed: Callable[[BaseException], None],
    *, owner: QObject | None = None,
) -> None:
    """Run ``fn`` on the global thread pool; its value or exception comes back on the GUI thread.

    With ``owner`` (the widget the callbacks draw into), a value that comes back after Qt deleted
    the owner (its window was closed meanwhile) is dropped instead of drawn into a deleted item.
    """
    signals = _CallSignals()
    _live_calls.add(signals)

    def finish(callback: Callable[[Any], None], value: Any) -> None:
        _live_calls.discard(signals)
        if owner is None or isValid(owner):
            callback(value)

    signals.done.connect(lambda value: finish(on_done, value))
    signals.failed.connect(lambda exc: finish(on_failed, exc))
    QThreadPool.globalInstance().start(_Call(fn, signals))
