"""Read and decode the next batch input on a thread while the network runs on the current one.

A bounded prefetch (one input ahead), so a batch of many ordinary images is limited by the network
rather than by reading and decoding. Only inputs that will run are read ahead: a job whose prediction
already exists is most likely skipped on resume, and reading it would only cost time. A read that
fails is not reported here: the job reads the input itself and reports the failure as always.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from labelfree_app.batch.plan import BatchJob

DECODE_MAX_PIXELS = 1024 * 1024  # per channel, all planes: larger inputs stream region by region (process.py)


class InputPrefetch:
    """One input read ahead: ``ahead(job)`` starts reading it, ``take(job)`` returns it (or None)."""

    def __init__(self, out_dir: Path, options: Any) -> None:
        self._out_dir, self._options = out_dir, options
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[BatchJob, Future] | None = None

    def ahead(self, job: BatchJob) -> None:
        """Start reading ``job``'s input unless its prediction exists already (a resume skips it)."""
        if not self._options.overwrite and job.outputs(self._out_dir, self._options.format).prediction.exists():
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labelfree-prefetch")
        self._pending = (job, self._pool.submit(_read_decoded, job, self._options))

    def take(self, job: BatchJob) -> Any:
        """The input of ``job`` read ahead, or None (not read ahead, or the read failed)."""
        pending, self._pending = self._pending, None
        if pending is None or pending[0] is not job:
            return None
        try:
            return pending[1].result()
        except Exception:  # noqa: BLE001  the job reads it again and reports the failure in its sentence
            return None

    def close(self) -> None:
        """Drop what was read ahead; waits for a read in progress (the thread cannot be cut)."""
        self._pending = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _read_decoded(job: BatchJob, options: Any) -> Any:
    from labelfree_app.batch.process import read_input

    image = read_input(job.input, options.rgb, options.position)
    pixels = int(np.prod(tuple(image.data.shape), dtype=np.int64)) // max(1, image.n_channels)
    if pixels <= DECODE_MAX_PIXELS and not isinstance(image.data, np.ndarray):
        image = dataclasses.replace(image, data=np.asarray(image.data))  # decode here, not on the network's time
    return image
