"""Which stored chunks of a Zarr array are missing, and whether an absence is legitimate.

zarr reads a chunk that is not stored as the array's fill value, so a deleted chunk file turns into
a silent hole of zeros. The rule LabelFree applies to an OME-Zarr input's full-resolution array:

* a chunk (or shard) inside the array's extent may be absent **only** where the store itself shows
  that the fill value stands for it: the array declares a fill value (a Zarr v2 ``fill_value: null``
  stands for nothing), and the next pyramid level, which is made from this one, holds only the
  fill value over the pixels derived wholly from that chunk. That is exactly what a writer that skips
  empty chunks (zarr-python 3's default, ``write_empty_chunks=False``) leaves behind;
* anything else (no lower level to corroborate, a lower level with data there, no fill value) is
  damage, refused with one sentence naming the chunk.

LabelFree's own outputs store every chunk (``write_empty_chunks=True``), so the resume check can
require all of them (``all_chunks_stored``).
"""

from __future__ import annotations

import math
from itertools import product
from pathlib import Path
from typing import Any, Iterator

import numpy as np

MAX_ABSENT = 65536  # chunks one image may leave out as empty (each is checked against the lower level)


def _unit(array: Any) -> tuple[int, ...]:
    """The shape of one stored object: a shard where the array is sharded, else a chunk."""
    shards = getattr(array, "shards", None)
    return tuple(int(n) for n in (shards or array.chunks))


def stored_keys(array: Any) -> Iterator[tuple[tuple[int, ...], str]]:
    """(grid coordinates, store key) of every chunk (or shard) inside the array's extent."""
    unit = _unit(array)
    grid = [math.ceil(int(n) / c) if int(n) else 0 for n, c in zip(array.shape, unit)]
    for coords in product(*(range(n) for n in grid)):
        yield coords, array.metadata.encode_chunk_key(coords)


def iter_missing(array: Any, folder: Path) -> Iterator[tuple[int, ...]]:
    """Grid coordinates of the chunks inside the extent that have no file under ``folder``, lazily (a
    declared grid can be far larger than the store)."""
    if array.nchunks_initialized >= array.nchunks and getattr(array, "shards", None) is None:
        return  # every chunk is stored (a listing, no stat per chunk)
    yield from (coords for coords, key in stored_keys(array) if not (Path(folder) / key).is_file())


def missing_chunks(array: Any, folder: Path) -> list[tuple[int, ...]]:
    """Grid coordinates of the chunks inside the extent that have no file under ``folder``."""
    return list(iter_missing(array, folder))


def chunk_region(array: Any, coords: tuple[int, ...]) -> tuple[slice, ...]:
    """The pixels of chunk ``coords``."""
    unit = _unit(array)
    return tuple(slice(c * u, min(int(n), (c + 1) * u)) for c, u, n in zip(coords, unit, array.shape))


def _is_fill(values: np.ndarray, fill: Any) -> bool:
    if isinstance(fill, float) and math.isnan(fill):
        return bool(np.isnan(values).all())
    return bool((values == fill).all())


def absence_is_legitimate(array: Any, coords: tuple[int, ...], lower: Any | None) -> bool:
    """True when the fill value stands for chunk ``coords``: a fill value is declared and ``lower`` (the next
    pyramid level) holds only that value where its pixels come wholly from this chunk."""
    fill = array.fill_value
    if lower is None or fill is None or lower.ndim != array.ndim:
        return False
    inner = []
    for region, full, small in zip(chunk_region(array, coords), array.shape, lower.shape):
        factor = int(full) / max(1, int(small))
        start, stop = math.ceil(region.start / factor), math.floor(region.stop / factor)
        if stop <= start:
            return False  # the chunk is too small to leave a trace of its own one level down
        inner.append(slice(start, stop))
    return _is_fill(np.asarray(lower[tuple(inner)]), fill)


def unexplained_missing(array: Any, folder: Path, lower: Any | None) -> tuple[int, ...] | None:
    """The first chunk that is missing without the store showing why (see the module's rule), or None."""
    for count, coords in enumerate(iter_missing(array, folder)):
        if count >= MAX_ABSENT or not absence_is_legitimate(array, coords, lower):
            return coords  # past MAX_ABSENT the store is more hole than image: damage, not a sparse image
    return None


def stored_bytes(folder: Path) -> int:
    """Total size of the files under ``folder`` (chunks and metadata)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
