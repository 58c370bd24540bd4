"""Streaming per-pixel mean and variance over samples, without holding the samples.

Welford's update for one sample, Chan et al.'s parallel combine for a batch or another
accumulator; both stay accurate for large offsets (e.g. 1e4 +- small noise) where the naive
``E[x^2] - E[x]^2`` cancels catastrophically.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Welford:
    """Per-element mean and variance of equally shaped arrays seen one at a time or in batches.

    ``dtype`` is the accumulator precision: float64 (default) or float32 to halve the memory."""

    def __init__(self, dtype: Any = np.float64) -> None:
        self._dtype = np.dtype(dtype)
        if self._dtype.kind != "f":
            raise ValueError(f"accumulator dtype must be floating point, got {self._dtype}")
        self._count = 0
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None  # sum of squared deviations from the mean

    def update(self, x: Any) -> None:
        """Add one sample."""
        sample = _as_array(x, self._dtype, copy=True)
        self._check_shape(sample.shape)
        self._count += 1
        if self._mean is None or self._m2 is None:
            self._mean = sample.copy()
            self._m2 = np.zeros_like(sample)
            return
        delta = sample - self._mean
        self._mean += delta / self._count
        sample -= self._mean  # now the deviation from the updated mean
        delta *= sample
        self._m2 += delta

    def update_batch(self, xs: Any) -> None:
        """Add a batch of samples stacked along axis 0."""
        batch = _as_array(xs, self._dtype, copy=False)
        if batch.ndim == 0:
            raise ValueError("update_batch needs samples stacked along axis 0")
        if batch.shape[0] == 0:
            return
        mean = batch.mean(axis=0, dtype=self._dtype)
        m2 = np.square(batch - mean).sum(axis=0, dtype=self._dtype)
        self._combine(batch.shape[0], mean, m2)

    def merge(self, other: Welford) -> None:
        """Add everything ``other`` has seen."""
        if other._count and other._mean is not None and other._m2 is not None:
            self._combine(other._count, other._mean.astype(self._dtype), other._m2.astype(self._dtype))

    def _combine(self, count: int, mean: np.ndarray, m2: np.ndarray) -> None:
        self._check_shape(mean.shape)
        if self._mean is None or self._m2 is None:
            self._count, self._mean, self._m2 = count, mean.copy(), m2.copy()
            return
        total = self._count + count
        delta = mean - self._mean
        self._mean += delta * (count / total)
        delta *= delta
        delta *= self._count * count / total
        self._m2 += m2
        self._m2 += delta
        self._count = total

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if self._mean is not None and self._mean.shape != shape:
            raise ValueError(f"sample shape {shape} differs from the earlier samples' {self._mean.shape}")

    @property
    def count(self) -> int:
        return self._count

    @property
    def mean(self) -> np.ndarray:
        """Per-element mean (a copy, in the accumulator dtype)."""
        return self._state()[0].copy()

    @property
    def variance(self) -> np.ndarray:
        """Population variance (ddof=0); zeros after a single sample."""
        return self._state()[1] / self._count

    @property
    def sample_variance(self) -> np.ndarray:
        """Unbiased sample variance (ddof=1); needs at least two samples."""
        if self._count < 2:
            raise ValueError(f"sample variance needs at least 2 samples, have {self._count}")
        return self._state()[1] / (self._count - 1)

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation (ddof=0)."""
        return np.sqrt(self.variance)

    def _state(self) -> tuple[np.ndarray, np.ndarray]:
        if self._mean is None or self._m2 is None:
            raise ValueError("no samples yet: call update() or update_batch() first")
        return self._mean, self._m2


def _as_array(x: Any, dtype: np.dtype, *, copy: bool) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, possibly on a GPU
        x = x.detach().cpu().numpy()
    return np.array(x, dtype=dtype, copy=True) if copy else np.asarray(x, dtype=dtype)
