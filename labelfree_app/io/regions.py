"""Lazy TIFF pixels: a series opened so that only the regions asked for are read and decoded.

Uncompressed contiguous series are read row range by row range with ``os.pread`` (``ContiguousPixels``;
not a memory map, whose pages would stay in this process's resident memory as a long time series
is read); tiled TIFFs and compressed strip TIFFs go through tifffile's zarr store (``aszarr``), whose
chunks are the file's tiles or strips, so reading a band of rows decodes only the tiles or strips
that band touches. The result is an ``io.lazy.LazyArray``: slicing and transposing stay lazy and
``np.asarray`` reads just that region.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from labelfree_app.io.lazy import LazyArray

# Files with more pixel bytes than this are opened lazily by ``read_image(..., lazy=True)``.
LAZY_MIN_BYTES = 64 * 1024 * 1024
# Rows of an uncompressed series are read at least this many bytes at a time (its "chunks").
CONTIGUOUS_CHUNK_BYTES = 8 * 1024 * 1024


def lazy_series(tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, path: Path) -> LazyArray:
    """A lazy array over the pixels of ``series`` (the first of the file; its own shape and axes)."""
    if series.dataoffset is not None and len(series.shape) >= 2:
        pixels = ContiguousPixels(path, int(series.dataoffset), series.shape, series.dtype.newbyteorder(tif.byteorder))
        return LazyArray(pixels, path)
    import zarr

    return LazyArray(zarr.open_array(series.aszarr(), mode="r"), path)


def is_lazy(array: Any) -> bool:
    """True for arrays whose pixels are read only when converted (not numpy arrays)."""
    return not isinstance(array, np.ndarray)


class ContiguousPixels:
    """An uncompressed contiguous (..., Y, X) array in a file, read with ``os.pread`` where sliced."""

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], dtype: Any) -> None:
        self.path, self.offset = Path(path), int(offset)
        self.shape, self.dtype = tuple(int(n) for n in shape), np.dtype(dtype)
        self.ndim = len(self.shape)
        rows = max(1, CONTIGUOUS_CHUNK_BYTES // max(1, self.shape[-1] * self.dtype.itemsize))
        self.chunks = (1,) * (self.ndim - 2) + (min(rows, self.shape[-2]), self.shape[-1])

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        ranges = [range(*(k if isinstance(k, slice) else slice(int(k), int(k) + 1)).indices(n))
                  for k, n in zip(key, self.shape)]
        height, width = self.shape[-2:]
        rows, columns = ranges[-2], ranges[-1]
        out = np.empty(tuple(len(r) for r in ranges), dtype=self.dtype.newbyteorder("="))
        if out.size:
            row_bytes = width * self.dtype.itemsize
            first, count = rows[0], rows[-1] - rows[0] + 1
            fd = os.open(self.path, os.O_RDONLY)
            try:
                for where, index in zip(itertools.product(*(range(len(r)) for r in ranges[:-2])),
                                        itertools.product(*ranges[:-2])):
                    plane = int(np.ravel_multi_index(index, self.shape[:-2])) if index else 0
                    data = os.pread(fd, count * row_bytes, self.offset + (plane * height + first) * row_bytes)
                    block = np.frombuffer(data, dtype=self.dtype).reshape(count, width)
                    out[where] = block[::rows.step, columns.start:columns.stop:columns.step]
            finally:
                os.close(fd)
        return out[tuple(0 if not isinstance(k, slice) else slice(None) for k in key)]
