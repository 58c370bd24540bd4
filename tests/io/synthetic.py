"""Deterministic synthetic arrays for the I/O tests."""

from __future__ import annotations

import numpy as np


def ramp(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """A deterministic array whose every pixel differs from its neighbours, in range for ``dtype``."""
    values = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (values * 0.25 - 7.5).astype(dtype)
    info = np.iinfo(dtype)
    span = int(info.max) - int(info.min) + 1
    return ((values * 37) % span + int(info.min)).astype(dtype)
