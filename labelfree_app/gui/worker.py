"""Workers that keep compute off the GUI thread.

``EventWorker`` consumes the engine's event generator in a ``QThread`` (the superqt generator-worker
pattern): it checks a cancel flag between events, re-emits events as signals, throttles previews
by time so the GUI is never flooded, and always closes the generator so its ``finally`` frees
memory. ``call_in_thread`` runs one function on the thread pool (used to read files).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterator

import numpy as np
from PySide6.QtCore import QObject, QRunnable, Qt, QThread, QThreadPool, Signal, Slot

from labelfree_app.core.events import Preview, Progress, PredictionResult
from labelfree_app.errors import LabelFreeError

_log = logging.getLogger(__name__)

PREVIEW_INTERVAL_S = 0.08  # at most ~12 previews per second per preview kind
PROGRESS_INTERVAL_S = 0.05

DONE, CANCELLED, FAILED = "done", "cancelled", "failed"


def _copy_preview(event: Preview) -> Preview:
    return Preview(event.kind, event.sample, event.step, event.total_steps, np.array(event.image, copy=True))


class EventWorker(QObject):
    """Runs ``make_events()`` and emits what it yields; ``finished`` carries done/cancelled/failed."""

    progress = Signal(object)  # Progress
    preview = Signal(object)  # Preview (a copy)
    result = Signal(object)  # PredictionResult
    errored = Signal(str, bool)  # message, is_user_error (LabelFreeError)
    finished = Signal(str)

    def __init__(
        self,
        make_events: Callable[[], Iterator[Any]],
        *,
        preview_interval_s: float = PREVIEW_INTERVAL_S,
        progress_interval_s: float = PROGRESS_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._make_events = make_events
        self._preview_interval_s = preview_interval_s
        self._progress_interval_s = progress_interval_s
        self._clock = clock
        self._cancel = threading.Event()
        self._last_preview_at: dict[str, float] = {}
        self._last_progress_at = float("-inf")
        self.events_seen = 0
        self.status = ""

    def cancel(self) -> None:
        """Ask the worker to stop; it does so before handling the next event (thread-safe)."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    @Slot()
    def run(self) -> None:
        events: Iterator[Any] | None = None
        status = DONE
        try:
            events = self._make_events()
            for event in events:
                if self._cancel.is_set():
                    status = CANCELLED
                    break
                self.events_seen += 1
                self._dispatch(event)
            else:
                if self._cancel.is_set():
                    status = CANCELLED
        except LabelFreeError as exc:
            status = FAILED
            self.errored.emit(str(exc), True)
        except Exception as exc:  # anything unexpected is logged in full and reported once
            status = FAILED
            _log.exception("prediction failed unexpectedly")
            self.errored.emit(f"{type(exc).__name__}: {exc}", False)
        finally:
            if events is not None and hasattr(events, "close"):
                try:
                    events.close()
                except Exception:
                    _log.exception("closing the event generator failed")
            self.status = status
            self.finished.emit(status)

    def _dispatch(self, event: Any) -> None:
        now = self._clock()
        if isinstance(event, Preview):
            last = self._last_preview_at.get(event.kind, float("-inf"))
            if now - last >= self._preview_interval_s:
                self._last_preview_at[event.kind] = now
                self.preview.emit(_copy_preview(event))
        elif isinstance(event, Progress):
            if event.done >= event.total or now - self._last_progress_at >= self._progress_interval_s:
                self._last_progress_at = now
                self.progress.emit(event)
        elif isinstance(event, PredictionResult):
            self.result.emit(event)
        else:
            _log.debug("ignoring unknown event %r", type(event).__name__)


class WorkerThread:
    """Owns a ``QThread`` running one ``EventWorker``; keeps both alive until the thread ends."""

    def __init__(self, worker: EventWorker) -> None:
        self.worker = worker
        self.thread = QThread()
        self.thread.setObjectName("labelfree-prediction")
        worker.moveToThread(self.thread)
        self.thread.started.connect(worker.run)
        # Direct: quit() is thread-safe, and a queued call would wait for the GUI thread.
        worker.finished.connect(self.thread.quit, Qt.ConnectionType.DirectConnection)

    def start(self) -> None:
        self.thread.start()

    def is_running(self) -> bool:
        return self.thread.isRunning()

    def wait(self, ms: int = 5000) -> bool:
        return self.thread.wait(ms)


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
    fn: Callable[[], Any], on_done: Callable[[Any], None], on_failed: Callable[[BaseException], None]
) -> None:
    """Run ``fn`` on the global thread pool; its value or exception comes back on the GUI thread."""
    signals = _CallSignals()
    _live_calls.add(signals)

    def finish(callback: Callable[[Any], None], value: Any) -> None:
        _live_calls.discard(signals)
        callback(value)

    signals.done.connect(lambda value: finish(on_done, value))
    signals.failed.connect(lambda exc: finish(on_failed, exc))
    QThreadPool.globalInstance().start(_Call(fn, signals))
