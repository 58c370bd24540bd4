"""Ctrl-C and SIGTERM for the commands that work through many files (batch, watch): the first Ctrl-C
finishes the current file, a second one (or SIGTERM) stops now; every write is atomic, so nothing is
left half."""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from typing import Any, Iterator


@contextmanager
def stop_on_first_interrupt(flag: list[bool]) -> Iterator[None]:
    """First Ctrl-C: finish the current file, then stop. Second Ctrl-C: stop now (writes are atomic)."""
    if sys.platform == "win32" or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if flag[0]:
            raise KeyboardInterrupt
        flag[0] = True
        print("\nStopping after the current file (Ctrl-C again to stop now).", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a job scheduler's time limit, ``kill``) stops now like a second Ctrl-C: the batch
    removes what the current file had written, writes its report and releases the folder's lock."""
    if sys.platform == "win32" or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
