"""The training worker: the CLI's training loop (``run_training``) in a ``GeneratorWorker``.

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
from typing import Any, Callable, Iterator

from PySide6.QtCore import Signal

from labelfree_app.gui.generator_worker import DONE, FAILED, GeneratorWorker

_log = logging.getLogger(__name__)

STEP_INTERVAL_S = 0.1
WORKER_NICENESS = 5  # Linux: the window's thread goes first when the CPU is short
PAUSED = "paused"

__all__ = ["DONE", "FAILED", "PAUSED", "TrainWorker", "lower_this_thread_priority", "read_manifest"]


class TrainWorker(GeneratorWorker):
    """Runs one training run (or the resumed part of one) and re-emits its events."""

    loading = Signal(int, int)  # pairs read, total
    started = Signal(object)  # TrainStarted
    steps = Signal(list)  # [StepDone, ...] since the last emit
    validated = Signal(object)  # ValidationDone (with its preview crop)
    checkpointed = Signal(object)  # CheckpointSaved
    trained = Signal(object, dict)  # TrainFinished, the package's manifest
    # errored(str, bool) and finished(str: done | paused | failed) come from GeneratorWorker.

    cancelled_status = PAUSED
    drop_event_after_cancel = False  # the step that was running when Pause came is checkpointed: show it
    what = "training"

    def __init__(self, config: Any, *, stop_now: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(self._events, thread_name="labelfree-training")
        self.config = config
        self._stop = threading.Event()
        if stop_now:
            self._stop.set()
        self._clock = clock
        self._pending: list[Any] = []
        self._last_emit = float("-inf")

    def pause(self) -> None:
        """Checkpoint and end after the current step (thread-safe)."""
        self.cancel()

    def stop(self) -> None:
        """Finish now and write the package from the best weights (thread-safe)."""
        self._stop.set()

    def should_cancel(self) -> bool:
        return self.cancel_requested and not self._stop.is_set()  # Stop wins: it writes the package

    def _events(self) -> Iterator[Any]:
        from labelfree_app.gui.backend import leave_a_core_for_the_window
        from labelfree_app.training.loop import run_training

        leave_a_core_for_the_window()
        lower_this_thread_priority()
        return run_training(self.config, should_stop=self._stop.is_set)

    def handle(self, event: Any) -> None:
        from labelfree_app.training.events import (CheckpointSaved, LoadingData, StepDone, TrainFinished,
                                                   TrainStarted, ValidationDone)

        if isinstance(event, StepDone):
            self._pending.append(event)
            if self._clock() - self._last_emit >= STEP_INTERVAL_S:
                self._flush()
            return
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

    def before_finish(self) -> None:
        self._flush()

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
