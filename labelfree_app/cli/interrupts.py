"""Ctrl-C and SIGTERM for a long command that can stop cleanly between events.

The first signal only raises a flag: the command checks it between events (``check``) and stops there,
so a training run closes its loop at a step boundary and checkpoints that step. A second signal stops
at once (``KeyboardInterrupt`` wherever the program is).
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator


class DeferredInterrupt:
    """A flag set by the first SIGINT or SIGTERM; ``check()`` raises KeyboardInterrupt once it is set."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.requested = False

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n{self.message}", file=sys.stderr, flush=True)

    def check(self) -> None:
        """Raise KeyboardInterrupt when a stop was asked for (call it between events)."""
        if self.requested:
            raise KeyboardInterrupt


@contextmanager
def deferred_interrupts(message: str) -> Iterator[DeferredInterrupt]:
    """Route SIGINT and SIGTERM to a ``DeferredInterrupt`` for the block (where Python lets us: main thread)."""
    flag = DeferredInterrupt(message)
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    signals = [signal.SIGINT] + ([signal.SIGTERM] if sys.platform != "win32" else [])
    previous = {number: signal.signal(number, flag._handler) for number in signals}
    try:
        yield flag
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
