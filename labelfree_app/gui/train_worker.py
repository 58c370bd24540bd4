"""The training worker: the CLI's training loop (``run_training``) in a QThread, as signals.

Pause closes the generator between events (the loop checkpoints the current step; resume starts a
new worker with ``config.resume=True``). Stop makes the loop's ``should_stop`` true: it validates,
checkpoints and writes the package from the best weights. Steps arrive many per second, so they
are batched and emitted at most ``STEP_INTERVAL_S`` apart; validations are emitted as they come.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Qt, Signal, Slot

from labelfree_app.errors import LabelFreeError

_log = logging.getLogger(__name__)

STEP_INTERVAL_S = 0.1
WORKER_NICENESS = 5  # Linux: the window's thread goes first when the CPU is short
DONE, PAUSED, FAILED = "done", "paused", "failed"


class TrainWorker(QObject):
    """Runs one training run (or the resumed part of one) and re-emits its events."""

    loading = Signal(int, int)  # pairs read, total
    started = Signal(object)  # TrainStarted
    steps = Signal(list)  # [StepDone, ...] since the last emit
    validated = Signal(object)  # ValidationDone (with its preview crop)
    checkpointed = Signal(object)  # CheckpointSaved
    trained = Signal(object, dict)  # TrainFinished, the package's manifest
    errored = Signal(str, bool)  # sentence, is_user_error
    finished = Signal(str)  # done | paused | failed

    def __init__(self, config: Any, *, stop_now: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.config = config
        self._pause = threading.Event()
        self._stop = threading.Event()
        if stop_now:
            self._stop.set()
        self._clock = clock
        self._pending: list[Any] = []
        self._last_emit = float("-inf")
        self.status = ""

    def pause(self) -> None:
        """Checkpoint and end after the current step (thread-safe)."""
        self._pause.set()

    def stop(self) -> None:
        """Finish now and write the package from the best weights (thread-safe)."""
        self._stop.set()

    @Slot()
    def run(self) -> None:
        from labelfree_app.gui.backend import leave_a_core_for_the_window
        from labelfree_app.training.events import (CheckpointSaved, LoadingData, StepDone, TrainFinished,
                                                   TrainStarted, ValidationDone)
        from labelfree_app.training.loop import run_training

        status = DONE
        run = None
        try:
            leave_a_core_for_the_window()
            lower_this_thread_priority()
            run = run_training(self.config, should_stop=self._stop.is_set)
            for event in run:
                if isinstance(event, StepDone):
                    self._pending.append(event)
                    if self._clock() - self._last_emit >= STEP_INTERVAL_S:
                        self._flush()
                else:
                    self._flush()
                    if isinstance(event, LoadingData):
                        self.loading.emit(event.done, event.total)
                    elif isinstance(event, TrainStarted):
                        self.started.emit(event)
                    elif isinstance(event, ValidationDone):
                        self.validated.emit(event)
                    elif isinstance(event, CheckpointSaved):
                        self.checkpointed.emit(event)
                    elif isinstance(event, TrainFinished):
                        self.trained.emit(event, read_manifest(event.package))
                if self._pause.is_set() and not self._stop.is_set():
                    status = PAUSED
                    run.close()  # the loop checkpoints the current step
                    break
            self._flush()
        except LabelFreeError as exc:
            status = FAILED
            self.errored.emit(str(exc), True)
        except Exception as exc:  # anything unexpected is logged in full and reported once
            status = FAILED
            _log.exception("training failed unexpectedly")
            self.errored.emit(f"{type(exc).__name__}: {exc}", False)
        finally:
            if run is not None:
                try:
                    run.close()
                except Exception:
                    _log.exception("closing the training run failed")
            self.status = status
            self.finished.emit(status)

    def _flush(self) -> None:
        if self._pending:
            self.steps.emit(self._pending)
            self._pending = []
        self._last_emit = self._clock()


def lower_this_thread_priority(niceness: int = WORKER_NICENESS) -> None:
    """Make the calling thread nicer than the GUI thread (Linux; elsewhere a no-op).

    Training takes every cycle it is given; painting the live curves must not wait behind it.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), niceness))
    except OSError:
        _log.debug("could not lower the training thread's priority", exc_info=True)


def read_manifest(package: Path) -> dict[str, Any]:
    """The manifest of a written package (for the model card), or {} if it cannot be read."""
    try:
        return dict(json.loads((Path(package) / "manifest.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        _log.exception("reading the new package's manifest failed")
        return {}


class TrainThread:
    """Owns the ``QThread`` of one ``TrainWorker``; keeps both alive until the thread ends."""

    def __init__(self, worker: TrainWorker, parent: QObject | None = None) -> None:
        self.worker = worker
        self.thread = QThread(parent)
        self.thread.setObjectName("labelfree-training")
        worker.moveToThread(self.thread)
        self.thread.started.connect(worker.run)
        # Direct: quit() is thread-safe, and a queued call would wait for the GUI thread.
        worker.finished.connect(self.thread.quit, Qt.ConnectionType.DirectConnection)

    def start(self) -> None:
        self.thread.start()

    def is_running(self) -> bool:
        return self.thread.isRunning()

    def wait(self, ms: int = 10000) -> bool:
        return self.thread.wait(ms)
