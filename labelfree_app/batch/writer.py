"""Write a finished job's files on a thread while the network runs on the next job.

A bounded write-behind: one job's writing (compressed OME-TIFF, provenance with the input's sha256,
trust map, the report row's facts) in flight at a time, so a batch holds at most the result being
written and the one the network is computing. The batch collects a write before it hands over the
next, so report rows and events keep their order. A write that fails is that job's "failed" row with
its file's sentence, as when written in line (``process.start_job``'s ``finish`` records it); a fatal
one (a full disk) is raised where the batch collects it. Files are written atomically, and closing
waits for the write in progress (a thread cannot be cut), so a stopped batch leaves no partial file.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from labelfree_app.batch.report import BatchRow


class WriteBehind:
    """One job's ``finish`` on a thread: ``submit`` it, ``collect`` it before submitting the next."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[int, Future[BatchRow]] | None = None

    def submit(self, position: int, finish: Callable[[], BatchRow]) -> None:
        """Start writing the job at ``position``; the previous write must have been collected."""
        if self._pending is not None:
            raise RuntimeError("collect the write in flight before submitting another")
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labelfree-writer")
        self._pending = (position, self._pool.submit(finish))

    def collect(self) -> tuple[int, Callable[[], BatchRow]] | None:
        """Wait for the write in flight: its job's position and a call that returns its row (or raises
        the write's fatal error); None when nothing was in flight."""
        pending = self._pending
        if pending is None:
            return None
        pending[1].exception()  # wait here, so the caller's call returns at once; an interrupt leaves it pending
        self._pending = None
        return pending[0], pending[1].result

    def close(self) -> None:
        """Wait for a write in progress and let the thread go; a write not collected is dropped from the
        report (its files are whole, and a resume verifies them)."""
        self._pending = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
