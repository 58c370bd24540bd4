"""A lazy, read-only view of chunked pixels on disk: index and transpose freely, read on conversion.

``LazyArray`` wraps a *base* that reads a region when indexed with a tuple of ints and slices and
returns a numpy array: a ``zarr.Array`` (an OME-Zarr dataset, or a TIFF's tiles and strips through
tifffile's ``aszarr`` store) or ``io.regions.ContiguousPixels``. Indexing (ints, forward slices,
``None``, ``...``) and ``transpose`` only compose the view; ``np.asarray`` reads exactly that region
of the base, so memory is the region's. No task graph is built (the view is a few integers), which
keeps a streamed prediction of a 32768² TIFF as small as one of a 2048² file (dask.array alone costs
~70 MB of imports). A failed read becomes one sentence: the file has a damaged or missing chunk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from labelfree_app.errors import CorruptImageError, LabelFreeError

# One output axis: ("b", base axis) for an axis of the base, ("n", length) for an inserted one.
Dim = tuple[str, int]


class LazyArray:
    """A view of ``base``: indexing stays lazy, ``np.asarray`` reads the pixels it covers.

    ``error`` is the LabelFreeError type raised when the base cannot be read (a damaged chunk)."""

    def __init__(self, base: Any, path: Path, *, error: type[LabelFreeError] = CorruptImageError,
                 key: Sequence[range | int] | None = None, dims: Sequence[Dim] | None = None) -> None:
        self._base, self.path, self._error = base, Path(path), error
        shape = tuple(int(n) for n in base.shape)
        self._key: tuple[range | int, ...] = tuple(key) if key is not None else tuple(range(n) for n in shape)
        self._dims: tuple[Dim, ...] = tuple(dims) if dims is not None else tuple(("b", i) for i in range(len(shape)))

    def _view(self, key: Sequence[range | int], dims: Sequence[Dim]) -> LazyArray:
        return LazyArray(self._base, self.path, error=self._error, key=key, dims=dims)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(self._key[n]) if kind == "b" else n for kind, n in self._dims)  # type: ignore[arg-type]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._base.dtype).newbyteorder("=")

    @property
    def ndim(self) -> int:
        return len(self._dims)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def chunks(self) -> tuple[tuple[int, ...], ...]:
        """The block sizes along each axis, dask style (reading whole blocks decodes each stored chunk once)."""
        base_chunks = _chunk_shape(self._base)
        out = []
        for kind, n in self._dims:
            if kind == "n":
                out.append((n,))
                continue
            selected = self._key[n]
            assert isinstance(selected, range)
            out.append(_blocks(selected, base_chunks[n]))
        return tuple(out)

    def transpose(self, *axes: Any) -> LazyArray:
        order = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else tuple(axes)
        order = order or tuple(reversed(range(self.ndim)))
        if sorted(int(a) % self.ndim for a in order) != list(range(self.ndim)):
            raise ValueError(f"axes {order} do not permute the {self.ndim} dimensions")
        return self._view(self._key, [self._dims[int(a) % self.ndim] for a in order])

    def __getitem__(self, key: Any) -> LazyArray:
        items = list(key) if isinstance(key, tuple) else [key]
        consumed = sum(1 for item in items if item is not None and item is not Ellipsis)
        if consumed > self.ndim:
            raise IndexError(f"too many indices for an array with {self.ndim} dimensions")
        if Ellipsis in items:
            at = items.index(Ellipsis)
            items[at:at + 1] = [slice(None)] * (self.ndim - consumed)
        items += [slice(None)] * (self.ndim - sum(1 for item in items if item is not None))
        base_key, dims, position = list(self._key), [], 0
        for item in items:
            if item is None:
                dims.append(("n", 1))
                continue
            kind, n = self._dims[position]
            length = self.shape[position]
            position += 1
            if isinstance(item, (int, np.integer)):
                index = int(item) + (length if int(item) < 0 else 0)
                if not 0 <= index < length:
                    raise IndexError(f"index {int(item)} is out of bounds for an axis of size {length}")
                if kind == "b":
                    selected = base_key[n]
                    assert isinstance(selected, range)
                    base_key[n] = selected[index]
            elif isinstance(item, slice):
                if kind == "b":
                    selected = base_key[n]
                    assert isinstance(selected, range)
                    picked = selected[item]
                    if picked.step < 0:
                        raise IndexError("a lazy image cannot be read backwards (negative step)")
                    base_key[n] = picked
                    dims.append(("b", n))
                else:
                    dims.append(("n", len(range(n)[item])))
            else:
                raise TypeError(f"a lazy image is indexed with ints and slices, not {type(item).__name__}")
        return self._view(base_key, dims)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if self.size == 0:
            return np.empty(self.shape, dtype=self.dtype if dtype is None else dtype)
        key = tuple(k if isinstance(k, int) else slice(k.start, k.stop, k.step) for k in self._key)
        try:
            data = np.asarray(self._base[key])
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - zarr, numcodecs, tifffile and the OS raise many types
            what = "the OME-Zarr" if self.path.is_dir() else "the file"
            raise self._error(f"{self.path} has a damaged or missing chunk ({type(exc).__name__}: {exc}); "
                              f"copy or export {what} again.", path=self.path) from exc
        kept = [n for n, k in enumerate(self._key) if not isinstance(k, int)]  # data's axes, base order
        order = [kept.index(n) for kind, n in self._dims if kind == "b"]
        data = data.transpose(order).reshape(self.shape)
        return np.asarray(data, dtype=self.dtype if dtype is None else dtype, order="C")

    def __repr__(self) -> str:
        return f"LazyArray(shape={self.shape}, dtype={self.dtype}, path={str(self.path)!r})"


def _chunk_shape(base: Any) -> tuple[int, ...]:
    """The stored chunk shape of a base (its whole shape when it states none)."""
    chunks = getattr(base, "chunks", None)
    shape = tuple(int(n) for n in base.shape)
    if isinstance(chunks, tuple) and len(chunks) == len(shape) and all(isinstance(c, (int, np.integer))
                                                                      for c in chunks):
        return tuple(max(1, int(c)) for c in chunks)
    return shape


def _blocks(selected: range, chunk: int) -> tuple[int, ...]:
    """Lengths of the runs of ``selected`` that fall in the same stored chunk of size ``chunk``."""
    if not len(selected):
        return (0,)
    if selected.step != 1:
        per = max(1, -(-chunk // selected.step))
        return tuple(min(per, len(selected) - i) for i in range(0, len(selected), per))
    start, stop = selected.start, selected.stop
    edges = [start] + list(range((start // chunk + 1) * chunk, stop, chunk)) + [stop]
    return tuple(b - a for a, b in zip(edges, edges[1:]))
