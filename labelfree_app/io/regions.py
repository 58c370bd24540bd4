"""Lazy TIFF pixels: a series opened so that only the regions asked for are read and decoded.

Uncompressed contiguous series are read row range by row range from the file (``ContiguousPixels``;
not a memory map, whose pages would stay in this process's resident memory as a long time series
is read); tiled TIFFs and compressed strip TIFFs are read tile by tile or strip by strip with
tifffile's decoder (``TiffSegments``), so reading a band of rows decodes only the tiles or strips
that band touches; layouts it does not take (planar samples, volumetric tiles, vendor transforms,
multi-file series) go through tifffile's zarr store (``aszarr``). The result is an
``io.lazy.LazyArray``: slicing and transposing stay lazy and ``np.asarray`` reads just that region.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from labelfree_app.io.lazy import LazyArray

# Files with more pixel bytes than this are opened lazily by ``read_image(..., lazy=True)``.
LAZY_MIN_BYTES = 64 * 1024 * 1024
# Rows of an uncompressed series are read at least this many bytes at a time (its "chunks").
CONTIGUOUS_CHUNK_BYTES = 8 * 1024 * 1024
# Series with more tiles and strips than this (16 bytes each to remember) go through tifffile's zarr store.
MAX_INDEXED_SEGMENTS = 1 << 20


def lazy_series(tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, path: Path) -> LazyArray:
    """A lazy array over the pixels of ``series`` (the first of the file; its own shape and axes)."""
    if series.dataoffset is not None and len(series.shape) >= 2:
        pixels = ContiguousPixels(path, int(series.dataoffset), series.shape, series.dtype.newbyteorder(tif.byteorder))
        return LazyArray(pixels, path)
    if TiffSegments.handles(series):
        return LazyArray(TiffSegments(series, path), path)
    import zarr  # planar samples, volumetric tiles, vendor layouts: tifffile's zarr store knows them all

    return LazyArray(zarr.open_array(series.aszarr(), mode="r"), path)


def is_lazy(array: Any) -> bool:
    """True for arrays whose pixels are read only when converted (not numpy arrays)."""
    return not isinstance(array, np.ndarray)


class ContiguousPixels:
    """An uncompressed contiguous (..., Y, X) array in a file, read where sliced (``read_at``)."""

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], dtype: Any) -> None:
        self.path, self.offset = Path(path), int(offset)
        self.shape, self.dtype = tuple(int(n) for n in shape), np.dtype(dtype)
        self.ndim = len(self.shape)
        rows = max(1, CONTIGUOUS_CHUNK_BYTES // max(1, self.shape[-1] * self.dtype.itemsize))
        self.chunks = (1,) * (self.ndim - 2) + (min(rows, self.shape[-2]), self.shape[-1])

    def __getitem__(self, key: Any) -> np.ndarray:
        return _read_region(self, key, self._read_page)

    def _read_page(self, handle: Any, page: int, rows: range, columns: range, out: np.ndarray) -> None:
        """Read the rows ``rows`` spans of one page in one go and keep ``rows`` × ``columns``."""
        height, width = self.shape[-2:]
        row_bytes = width * self.dtype.itemsize
        first, count = rows[0], rows[-1] - rows[0] + 1
        data = read_at(handle, self.offset + (page * height + first) * row_bytes, count * row_bytes)
        block = np.frombuffer(data, dtype=self.dtype).reshape(count, width)
        out[...] = block[::rows.step, columns.start:columns.stop:columns.step]


class TiffSegments:
    """A tiled or strip TIFF series of one-sample 2-D pages, read segment by segment.

    Each region decodes just the tiles or strips it touches with tifffile's own decoder
    (``TiffPage.decode``, every compression and predictor tifffile knows), reading their bytes with
    ``read_at`` on a handle of their own, so reads are thread-safe and hold nothing between calls.
    The segment offsets of every page are noted when the file is opened. A tile that a region cuts across is decoded whole
    and cropped; an empty tile reads as the file's no-data value."""

    def __init__(self, series: tifffile.TiffPageSeries, path: Path) -> None:
        key = series.keyframe
        self.path = Path(path)
        self.shape = tuple(int(n) for n in series.shape)
        self.dtype = np.dtype(series.dtype)
        self.ndim = len(self.shape)
        height, width = self.shape[-2:]
        self._tile = (int(key.tilelength), int(key.tilewidth)) if key.is_tiled else \
            (min(int(key.rowsperstrip or height), height), width)
        self.chunks = (1,) * (self.ndim - 2) + self._tile
        self._across = -(-width // self._tile[1])
        self._decode, self._jpegtables, self._nodata = key.decode, key.jpegtables, key.nodata
        pages = [series[i] for i in range(len(series))]
        self._offsets = np.array([page.dataoffsets for page in pages], dtype=np.int64)
        self._counts = np.array([page.databytecounts for page in pages], dtype=np.int64)

    @staticmethod
    def handles(series: tifffile.TiffPageSeries) -> bool:
        """Whether this reader fits the series (else tifffile's zarr store is used)."""
        key = series.keyframe
        simple = (key.samplesperpixel == 1 and getattr(key, "imagedepth", 1) == 1 and len(key.shape) == 2
                  and series.transform is None and not series.is_multifile and tuple(series.shape[-2:]) == key.shape)
        segments = len(key.dataoffsets) * len(series)
        return bool(simple and len(series) == int(np.prod(series.shape[:-2], dtype=np.int64))
                    and segments <= MAX_INDEXED_SEGMENTS)

    def __getitem__(self, key: Any) -> np.ndarray:
        return _read_region(self, key, self._read_page)

    def _read_page(self, handle: Any, page: int, rows: range, columns: range, out: np.ndarray) -> None:
        """Decode the segments of one page that ``rows`` × ``columns`` touch into ``out``."""
        tile_h, tile_w = self._tile
        for ty in np.unique(np.arange(rows.start, rows.stop, rows.step) // tile_h):
            for tx in np.unique(np.arange(columns.start, columns.stop, columns.step) // tile_w):
                index = int(ty) * self._across + int(tx)
                offset, count = int(self._offsets[page, index]), int(self._counts[page, index])
                data = read_at(handle, offset, count) if offset and count else None
                segment, position, _ = self._decode(data, index, jpegtables=self._jpegtables)
                y0, x0 = int(position[2]), int(position[3])
                r0, r1 = _run(rows, y0, y0 + tile_h)
                c0, c1 = _run(columns, x0, x0 + tile_w)
                target = out[r0:r1, c0:c1]
                if segment is None:
                    target[...] = self._nodata
                    continue
                plane = segment[0, :, :, 0]
                target[...] = plane[rows.start + r0 * rows.step - y0::rows.step][:r1 - r0,
                                    columns.start + c0 * columns.step - x0::columns.step][:, :c1 - c0]


def _read_region(source: Any, key: Any, read_page: Any) -> np.ndarray:
    """``source[key]`` (ints and slices over a (..., Y, X) ``source``) as a native-order array: each page
    the key picks is filled by ``read_page(handle, page index, rows, columns, out)`` on one file handle
    of this call's own (so concurrent reads never share a file position)."""
    key = key if isinstance(key, tuple) else (key,)
    key = key + (slice(None),) * (source.ndim - len(key))
    ranges = [range(*(k if isinstance(k, slice) else slice(int(k), int(k) + 1)).indices(n))
              for k, n in zip(key, source.shape)]
    out = np.empty(tuple(len(r) for r in ranges), dtype=source.dtype.newbyteorder("="))
    if out.size:
        with open(source.path, "rb", buffering=0) as handle:
            for where, index in zip(itertools.product(*(range(len(r)) for r in ranges[:-2])),
                                    itertools.product(*ranges[:-2])):
                page = int(np.ravel_multi_index(index, source.shape[:-2])) if index else 0
                read_page(handle, page, ranges[-2], ranges[-1], out[where])
    return out[tuple(0 if not isinstance(k, slice) else slice(None) for k in key)]


def read_at(handle: Any, offset: int, count: int) -> bytearray:
    """``count`` bytes from ``offset`` of an unbuffered binary file (fewer only at the end of the file).

    Not ``os.pread``, which Windows lacks; every read opens its own handle, so seeking is safe
    across threads."""
    handle.seek(offset)
    buffer = bytearray(count)
    view, done = memoryview(buffer), 0
    while done < count:
        n = handle.readinto(view[done:])
        if not n:
            break
        done += n
    view.release()
    del buffer[done:]
    return buffer


def _run(selected: range, lo: int, hi: int) -> tuple[int, int]:
    """Positions k0:k1 in ``selected`` (a forward range) of the values in [lo, hi)."""
    k0 = max(0, -(-(lo - selected.start) // selected.step))
    k1 = min(len(selected), max(0, -(-(hi - selected.start) // selected.step)))
    return k0, max(k0, k1)
