"""Hold Ctrl-C and SIGTERM over a write that must not be cut inside a library call.

zarr (v3) runs its I/O on a thread of its own: a KeyboardInterrupt raised in the main thread in the
middle of ``array[...] = block`` leaves that thread writing, so a temp folder removed on the way out can
come back, and the unfinished task may print a traceback. Inside ``interrupts_held`` a signal is only
recorded; it is raised again, with the handlers that were in place, as soon as the block ends, where the
caller's cleanup runs as usual.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Record SIGINT and SIGTERM during the block and deliver them when it ends (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    numbers = [signal.SIGINT] + ([signal.SIGTERM] if sys.platform != "win32" else [])
    pending: list[int] = []

    def record(signum: int, frame: Any) -> None:
        pending.append(signum)

    previous = {number: signal.signal(number, record) for number in numbers}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in dict.fromkeys(pending):
            signal.raise_signal(number)  # the caller's own handler (or the default) now acts on it
