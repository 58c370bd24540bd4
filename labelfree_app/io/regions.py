"""Lazy TIFF pixels: a series opened so that only the regions asked for are read and decoded.

Uncompressed contiguous series are memory-mapped (``tifffile.memmap``); tiled TIFFs and compressed
strip TIFFs go through tifffile's zarr store (``aszarr``), whose chunks are the file's tiles or
strips, so reading a band of rows decodes only the tiles or strips that band touches. The result is
wrapped in ``io.ome_zarr.LazyArray`` (dask underneath): slicing and transposing stay lazy and
``np.asarray`` reads just that region.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tifffile

# Files with more pixel bytes than this are opened lazily by ``read_image(..., lazy=True)``.
LAZY_MIN_BYTES = 64 * 1024 * 1024


def lazy_series(tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, path: Path) -> Any:
    """A dask array over the pixels of ``series`` (the first of the file; its own shape and axes)."""
    import dask.array as da

    if series.dataoffset is not None and tif.byteorder in ("<", "="):
        mapped = tifffile.memmap(str(path), series=0, mode="r")
        rows = max(1, (8 * 1024 * 1024) // max(1, mapped.shape[-1] * mapped.dtype.itemsize))
        chunks = (1,) * (mapped.ndim - 2) + (min(rows, mapped.shape[-2]), mapped.shape[-1])
        return da.from_array(mapped, chunks=chunks, lock=False, asarray=True, name=False)
    import zarr

    store = series.aszarr()
    return da.from_zarr(zarr.open(store, mode="r"))


def is_lazy(array: Any) -> bool:
    """True for arrays whose pixels are read only when converted (not numpy arrays)."""
    return not isinstance(array, np.ndarray)
