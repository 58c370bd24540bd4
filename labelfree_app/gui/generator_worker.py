"""The one generator worker: runs a generator in its own ``QThread`` and reports it as signals.

Modelled on superqt's ``GeneratorWorker``: each yielded event goes to ``handle`` (on the worker
thread; by default it emits ``yielded``), the generator's return value is emitted as ``returned``,
a ``LabelFreeError`` becomes ``errored(sentence, True)`` and anything else is logged with its
traceback and becomes ``errored("Type: message", False)``. ``cancel()`` is checked between events:
the generator is closed, so its ``finally`` frees memory. ``finished`` always comes last, with
``"done"``, ``"cancelled"`` (or the subclass's name for it) or ``"failed"``.

Prediction, batch export, training and the self-test all run through this class.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterator

from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, Signal, Slot

from labelfree_app.core.drive import drive
from labelfree_app.errors import LabelFreeError

_log = logging.getLogger(__name__)

DONE, CANCELLED, FAILED = "done", "cancelled", "failed"

MakeGenerator = Callable[[], Iterator[Any]]

# Workers whose thread is still running: a QThread garbage-collected while running aborts the app.
_running: set["GeneratorWorker"] = set()


class _Keeper(QObject):
    """Lives on the GUI thread; lets go of a worker once its thread has really ended."""

    @Slot()
    def forget(self) -> None:
        thread = self.sender()
        for worker in [w for w in _running if w.thread is thread]:
            worker.thread.wait()  # ``finished`` came from the thread's last instructions: returns at once
            _running.discard(worker)


_keeper: _Keeper | None = None


def _the_keeper() -> _Keeper:
    global _keeper
    if _keeper is None:
        _keeper = _Keeper()
        app = QCoreApplication.instance()
        if app is not None:  # quitting with a self-test or batch still running must not abort
            app.aboutToQuit.connect(stop_all_workers)
    return _keeper


def stop_all_workers(ms: int = 10000) -> bool:
    """Cancel every running worker and wait up to ``ms`` for each; True if all ended."""
    workers = list(_running)
    for worker in workers:
        worker.cancel()
    return all(worker.wait(ms) for worker in workers)


class _Cancelled(Exception):
    """Raised inside ``drive`` to stop between events (never leaves this module)."""


class GeneratorWorker(QObject):
    """Consumes ``make_generator()`` off the GUI thread; see the module docstring for the signals."""

    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(str, bool)  # sentence, is_user_error (LabelFreeError)
    finished = Signal(str)  # done | cancelled | failed

    cancelled_status = CANCELLED
    # An event that arrives after cancel() is dropped, unless it stands for work the generator keeps
    # (a training step that the pause checkpoints must still be shown).
    drop_event_after_cancel = True
    what = "background work"  # for the log: "<what> failed unexpectedly"

    def __init__(self, make_generator: MakeGenerator, *, thread_name: str = "labelfree-worker") -> None:
        super().__init__()
        self._make_generator = make_generator
        self._cancel = threading.Event()
        self.thread = QThread()  # made here so callers can connect to ``thread.finished`` before start()
        self.thread.setObjectName(thread_name)
        self.events_seen = 0
        self.status = ""

    # --- control (any thread) -------------------------------------------------------------
    def cancel(self) -> None:
        """Stop before the next event is handled; the generator is closed (thread-safe)."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def should_cancel(self) -> bool:
        """Checked when an event arrives (it is then dropped) and again after it is handled."""
        return self._cancel.is_set()

    # --- thread ---------------------------------------------------------------------------
    def start(self) -> None:
        """Run in a new ``QThread``; signals reach receivers on the GUI thread queued."""
        thread = self.thread
        self.moveToThread(thread)
        thread.started.connect(self.run)
        # Direct: quit() is thread-safe, and a queued call would wait for the GUI thread.
        self.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        thread.finished.connect(_the_keeper().forget, Qt.ConnectionType.QueuedConnection)
        _running.add(self)
        thread.start()

    def is_running(self) -> bool:
        return self.thread.isRunning()

    def wait(self, ms: int = 5000) -> bool:
        """Wait for the thread to end; True if it has (or never started)."""
        return self.thread.wait(ms)

    # --- the loop (worker thread; tests may call it directly) ----------------------------
    @Slot()
    def run(self) -> None:
        status = DONE
        try:
            value = drive(self._make_generator(), self._on_event)
            self.before_finish()
            self.returned.emit(value)
        except _Cancelled:
            status = self.cancelled_status
            self.before_finish()
        except LabelFreeError as exc:
            status = FAILED
            self.errored.emit(str(exc), True)
        except Exception as exc:  # anything unexpected is logged in full and reported once
            status = FAILED
            _log.exception("%s failed unexpectedly", self.what)
            self.errored.emit(f"{type(exc).__name__}: {exc}", False)
        finally:
            self.status = status
            self.finished.emit(status)

    def _on_event(self, event: Any) -> Any:
        if self.drop_event_after_cancel and self.should_cancel():
            raise _Cancelled
        self.events_seen += 1
        reply = self.handle(event)
        if self.should_cancel():  # asked during this event: produce no further one
            raise _Cancelled
        return reply

    def handle(self, event: Any) -> Any:
        """Re-emit one event (worker thread). The return value is sent into the generator."""
        self.yielded.emit(event)
        return None

    def before_finish(self) -> None:
        """Called on the worker thread after the last event (done or cancelled), e.g. to flush."""
