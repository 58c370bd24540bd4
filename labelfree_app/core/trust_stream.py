"""Trust features of a streamed plane, gathered band by band in bounded memory.

A huge plane is never whole in memory, so ``PlaneWatcher`` keeps what the estimate needs as the
bands go by: a strided sample of the prediction (at most ``SAMPLE_PIXELS``), the patch statistics
of the normalized input (one row of 32×32 patches at a time, once the bands have brought it and
the row under it) and the input's moments. The features match ``core.trust.prediction_features``
on a whole image, and the familiarity per patch (the trust map) is the whole image's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from labelfree_app.core.trust import PATCH, InputProfile, familiarity_features, output_features, patch_statistics

SAMPLE_PIXELS = 2_000_000  # output_features strides it down to STATS_PIXELS


class PlaneWatcher:
    """Watches one streamed (C, Y, X) plane: ``band`` for each band read, ``rows`` for each finished
    block of prediction rows (z-scores), then ``features``."""

    def __init__(self, height: int, width: int, profile: InputProfile | None) -> None:
        self.height, self.width = height, width
        self.stride = max(1, math.ceil(math.sqrt(height * width / SAMPLE_PIXELS)))
        self.sample = np.zeros((math.ceil(height / self.stride), math.ceil(width / self.stride)), np.float32)
        self.profile = profile
        n_py, n_px = max(1, height // PATCH), max(1, width // PATCH)
        self.stats = np.zeros((n_py, n_px, 3), np.float32)
        self._next_strip = 0
        self._seen = 0  # input rows taken so far
        self._pending: list[np.ndarray] = []  # normalized rows of the unfinished strip, from its first
        self._sum = self._sum_sq = 0.0
        self._count = 0

    def band(self, band: np.ndarray, lo: int, hi: int, normalizer: Any) -> None:
        """Take the raw band ``[lo, hi)``: its rows not seen yet are normalized and kept until a row of
        patches and the row under it are in (bands may meet anywhere), then reduced to the patches'
        statistics."""
        n_py = self.stats.shape[0]
        start = max(lo, self._seen)
        while self._next_strip < n_py and start < hi:
            y0 = self._next_strip * PATCH
            last = self._next_strip == n_py - 1
            need = self.height if last else y0 + PATCH + 1  # the row under the strip: its gradients
            stop = min(hi, need)
            rows = np.nan_to_num(normalizer.apply(band[:, start - lo:stop - lo]), copy=False, nan=0.0, posinf=0.0,
                                 neginf=0.0)
            self._sum += float(rows.sum(dtype=np.float64))
            self._sum_sq += float(np.square(rows, dtype=np.float64).sum())
            self._count += rows.size
            self._pending.append(rows)
            self._seen = start = stop
            if stop < need:
                break
            strip = np.concatenate(self._pending, axis=1) if len(self._pending) > 1 else self._pending[0]
            if last:
                self.stats[self._next_strip] = patch_statistics(strip, PATCH)[0, :self.stats.shape[1]]
                self._pending = []
            else:
                self.stats[self._next_strip] = patch_statistics(strip[:, :PATCH], PATCH, below=strip[:, PATCH])[0]
                self._pending = [strip[:, PATCH:].copy()]  # the row under is the next strip's first
            self._next_strip += 1

    def rows(self, y0: int, mean: np.ndarray) -> None:
        """A finished block of prediction rows (C, h, X) in z-scores, starting at image row ``y0``."""
        block = mean[0]
        first = (-y0) % self.stride
        picked = block[first::self.stride, ::self.stride]
        if picked.size:
            start = (y0 + first) // self.stride
            self.sample[start:start + picked.shape[0], :picked.shape[1]] = picked

    def features(self) -> tuple[dict[str, float], np.ndarray | None]:
        """The features of the plane, as ``prediction_features`` gives them, and the familiarity map."""
        mean = self._sum / max(1, self._count)
        input_sd = float(math.sqrt(max(0.0, self._sum_sq / max(1, self._count) - mean * mean)))
        familiar = None if self.profile is None else self.profile.familiarity_of(self.stats)
        return {**output_features(self.sample), "input_sd": input_sd, **familiarity_features(familiar)}, familiar
