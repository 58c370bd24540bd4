"""Time left in a batch, moving during a long file (no Qt): the finished files' mean time, and the
running file's own rate from its per-step progress (``JobProgress``: tiles, sampling steps)."""

from __future__ import annotations

import time
from typing import Callable

LOADING = "loading"  # the engine's first stage: says nothing about how long the file takes


class BatchClock:
    """Feed it the batch's events; ``eta()`` counts down between them and ``status()`` says what runs."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._worked: list[float] = []  # seconds of each finished file that did real work (not skipped)
        self._total = 0
        self._after = 0  # files after the running one
        self._job_start = clock()
        self._stage, self._done, self._of = "", 0, 0
        self._estimate: tuple[float, float] | None = None  # (seconds left, when it was made)

    def job_started(self, position: int, total: int) -> None:
        self._total, self._after = total, max(total - position - 1, 0)
        self._job_start = self._clock()
        self._stage, self._done, self._of = LOADING, 0, 0
        self._estimate_now(None)

    def job_progress(self, done: int, total: int, stage: str) -> None:
        self._stage, self._done, self._of = stage, done, total
        fraction = done / total if total and stage != LOADING else None
        self._estimate_now(fraction)

    def job_finished(self, seconds: float, worked: bool, eta: float | None) -> None:
        if worked:
            self._worked.append(seconds)
        self._estimate = (eta, self._clock()) if eta is not None else None

    def _estimate_now(self, fraction: float | None) -> None:
        now = self._clock()
        elapsed = now - self._job_start
        mean = sum(self._worked) / len(self._worked) if self._worked else None
        if fraction is not None and fraction > 0:
            this_file = elapsed / fraction  # the running file's own projection
            left_here = this_file - elapsed
        elif mean is not None:
            this_file, left_here = mean, max(mean - elapsed, 0.0)
        else:
            return  # nothing to go on yet: keep the last estimate (or "estimating")
        per_file = mean if mean is not None else this_file
        self._estimate = (left_here + self._after * per_file, now)

    def eta(self) -> float | None:
        """Seconds left in the whole batch, counting down between events; None while unknown."""
        if self._estimate is None:
            return None
        left, made = self._estimate
        return max(left - (self._clock() - made), 0.0)

    def status(self) -> str:
        """What the running file is doing, for the dialog's status line."""
        elapsed = int(self._clock() - self._job_start)
        if self._stage == LOADING or not self._of:
            return f"Loading the model… ({elapsed} s on this file)"
        return f"{self._stage.capitalize()}: {self._done} of {self._of} ({elapsed} s on this file)"
