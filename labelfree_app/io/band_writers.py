"""Writers that take an image band by band (rows of one plane) so no output is ever whole in memory.

``TiledTiffBandWriter`` lays out an uncompressed tiled (BigTIFF when large) OME-TIFF in a temp file
next to the target, its pixels a hole yet to be filled, then writes each band's rows straight into the
tiles at their file offsets; the
provenance, known only at the end, replaces a placeholder in the OME-XML before the temp file is
renamed. ``OmeZarrBandWriter`` writes level 0 of an NGFF 0.5 pyramid chunk row by chunk row and
builds the smaller levels and metadata at the end (``io.ome_zarr``). Both are context managers:
leaving with an exception (or Ctrl-C, or a cancelled generator) removes the temp file or folder.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence
from xml.sax.saxutils import escape

import numpy as np
import tifffile

from labelfree_app import __version__
from labelfree_app.io.atomic import atomic_path, check_not_input, check_writable_folder, ensure_free_space, write_error
from labelfree_app.io.channels import default_channel_names
from labelfree_app.io.interrupt_hold import interrupts_held
from labelfree_app.io.tiff_metadata import PROVENANCE_NAMESPACE

TIFF_TILE = 256
_PLACEHOLDER = "@@LABELFREE-PROVENANCE@@"


class TiledTiffBandWriter:
    """A (T, C, Z, Y, X) OME-TIFF written band by band; see the module docstring."""

    def __init__(self, path: Path, shape: Sequence[int], dtype: Any, *, channel_names: Sequence[str] | None = None,
                 pixel_size_um: Mapping[str, float] | None = None, protected_paths: Iterable[Any] = ()) -> None:
        self.path = Path(path)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self._names = list(channel_names or default_channel_names(self.shape[1]))
        self._sizes = {k.upper(): float(v) for k, v in (pixel_size_um or {}).items()}
        self._protected = list(protected_paths)
        self._stack = ExitStack()
        self._fd = -1
        self._offsets: list[tuple[int, ...]] = []
        self._finished = False

    def __enter__(self) -> TiledTiffBandWriter:
        nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        temp = self._stack.enter_context(atomic_path(self.path, protected_paths=self._protected,
                                                     expected_bytes=nbytes + 1024 * 1024))
        self._temp = temp
        metadata: dict[str, Any] = {
            "axes": "TCZYX", "Creator": f"LabelFree {__version__}", "Name": self.path.name,
            "Channel": {"Name": self._names},
            "CommentAnnotation": {"Namespace": PROVENANCE_NAMESPACE, "Value": _PLACEHOLDER},
        }
        for axis, size in self._sizes.items():
            metadata[f"PhysicalSize{axis}"] = size
            metadata[f"PhysicalSize{axis}Unit"] = "µm"
        resolution = (1e4 / self._sizes["X"], 1e4 / self._sizes["Y"]) if {"X", "Y"} <= set(self._sizes) else None
        try:
            self._offsets = _sparse_tiled_tiff(temp, self.shape, self.dtype, bigtiff=nbytes > 2**32 - 2**25,
                                               photometric="minisblack", metadata=metadata, resolution=resolution,
                                               resolutionunit="CENTIMETER" if resolution else None)
            self._fd = os.open(temp, os.O_RDWR)
        except OSError as exc:
            self._stack.close()
            raise write_error(exc, self.path) from exc
        except BaseException:
            self._stack.close()
            raise
        return self

    def write_rows(self, t: int, c: int, z: int, y0: int, rows: np.ndarray) -> None:
        """Write (h, X) ``rows`` of plane (t, c, z) starting at row ``y0``."""
        _, n_c, n_z, height, width = self.shape
        page = (t * n_c + c) * n_z + z
        offsets = self._offsets[page]
        across = -(-width // TIFF_TILE)
        rows = np.asarray(rows, dtype=self.dtype)
        item = self.dtype.itemsize
        y, end = y0, y0 + rows.shape[0]
        while y < end:
            tile_row, inside = divmod(y, TIFF_TILE)
            stop = min(end, (tile_row + 1) * TIFF_TILE)
            for col in range(across):
                block = np.zeros((stop - y, TIFF_TILE), dtype=self.dtype)
                part = rows[y - y0:stop - y0, col * TIFF_TILE:(col + 1) * TIFF_TILE]
                block[:, :part.shape[1]] = part
                offset = offsets[tile_row * across + col] + inside * TIFF_TILE * item
                try:
                    os.pwrite(self._fd, block.tobytes(), offset)
                except OSError as exc:
                    raise write_error(exc, self.path) from exc
            y = stop

    def finish(self, provenance: Mapping[str, Any] | None) -> Path:
        """Store the provenance, close and rename the temp file to the target; returns the target."""
        from labelfree_app.io.provenance import provenance_block

        os.close(self._fd)
        self._fd = -1
        with tifffile.TiffFile(self._temp) as tif:
            description = tif.pages.first.description
        value = escape(json.dumps(provenance_block(provenance)), {'"': "&quot;"})
        tifffile.tiffcomment(self._temp, description.replace(_PLACEHOLDER, value).encode("utf-8"))
        self._stack.close()  # fsync + rename
        self._finished = True
        return self.path

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if not self._finished:  # an error, or left without finish(): the temp file goes
            error = exc if exc is not None else GeneratorExit()
            self._stack.__exit__(type(error), error, tb)


def _sparse_tiled_tiff(path: Path, shape: tuple[int, ...], dtype: np.dtype, **options: Any) -> list[tuple[int, ...]]:
    """Lay out an uncompressed tiled TIFF of ``shape`` whose pixel bytes are a hole at the end of the file
    (nothing written, read as zeros until filled); returns each page's tile offsets.

    tifffile writes the IFDs with every tile 0 bytes long at one offset; the tiles' real offsets in the
    hole are then written over those tags in place, so no time goes into writing zeros first."""
    tile_bytes = TIFF_TILE * TIFF_TILE * dtype.itemsize
    per_page = -(-shape[-2] // TIFF_TILE) * -(-shape[-1] // TIFF_TILE)
    pages = int(np.prod(shape[:-2], dtype=np.int64))
    if tuple(shape[-2:]) == (TIFF_TILE, TIFF_TILE):  # tifffile writes one-tile pages as plain data
        tifffile.imwrite(path, shape=shape, dtype=dtype, tile=(TIFF_TILE, TIFF_TILE), ome=True, **options)
        with tifffile.TiffFile(path) as tif:
            return [tuple(int(o) for o in tif.pages[k].dataoffsets) for k in range(pages)]
    empty = ((b"", tile_bytes) for _ in range(pages * per_page))
    tifffile.imwrite(path, empty, shape=shape, dtype=dtype, tile=(TIFF_TILE, TIFF_TILE), ome=True, **options)
    base = -(-os.path.getsize(path) // 4096) * 4096
    offsets = [tuple(base + (k * per_page + j) * tile_bytes for j in range(per_page)) for k in range(pages)]
    with tifffile.TiffFile(path, mode="r+b") as tif:
        for k in range(pages):
            tif.pages[k].tags["TileOffsets"].overwrite(offsets[k])
    size = pages * per_page * tile_bytes
    fd = os.open(path, os.O_RDWR)
    try:  # allocated but unwritten: reads as zeros, and filling it needs no block allocation per write
        os.posix_fallocate(fd, base, size)
    except (AttributeError, OSError) as exc:  # no fallocate here (macOS, Windows, some file systems)
        if isinstance(exc, OSError) and exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        os.ftruncate(fd, base + size)
    finally:
        os.close(fd)
    return offsets


class OmeZarrBandWriter:
    """A (T, C, Z, Y, X) NGFF 0.5 OME-Zarr written band by band (level 0 chunk row by chunk row)."""

    def __init__(self, path: Path, shape: Sequence[int], dtype: Any, *, channel_names: Sequence[str] | None = None,
                 pixel_size_um: Mapping[str, float] | None = None, protected_paths: Iterable[Any] = ()) -> None:
        self.path = Path(path).expanduser().absolute()
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self._names = list(channel_names or default_channel_names(self.shape[1]))
        self._sizes = {k.upper(): float(v) for k, v in (pixel_size_um or {}).items()}
        self._protected = list(protected_paths)
        self._pending: dict[tuple[int, int, int], tuple[int, list[np.ndarray]]] = {}
        self._finished = False

    def __enter__(self) -> OmeZarrBandWriter:
        import zarr

        from labelfree_app.io.ome_zarr import CHUNK_YX, _temp_folder, pyramid_shapes

        check_not_input(self.path, self._protected)
        check_writable_folder(self.path.parent)
        ensure_free_space(self.path.parent, int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize)
        with interrupts_held():  # the temp folder exists only together with the writer that removes it
            try:
                self._temp = _temp_folder(self.path)
            except OSError as exc:
                raise write_error(exc, self.path) from exc
            try:
                self._group = zarr.open_group(str(self._temp), mode="w", zarr_format=3)
                self._chunk = min(CHUNK_YX, self.shape[-2])
                chunks = (1, 1, 1, self._chunk, min(CHUNK_YX, self.shape[-1]))
                self._levels = [self._group.create_array(f"s{k}", shape=s, dtype=self.dtype, fill_value=0,
                                                         chunks=tuple(min(c, n) for c, n in zip(chunks, s)))
                                for k, s in enumerate(pyramid_shapes(self.shape))]
            except BaseException:
                shutil.rmtree(self._temp, ignore_errors=True)
                raise
        return self

    def write_rows(self, t: int, c: int, z: int, y0: int, rows: np.ndarray) -> None:
        """Write (h, X) ``rows`` of plane (t, c, z) from row ``y0`` (rows arrive in order)."""
        key = (t, c, z)
        start, held = self._pending.get(key, (y0, []))
        held.append(np.array(rows, dtype=self.dtype))  # a copy: the caller reuses its row buffer
        end = y0 + rows.shape[0]
        full = (end // self._chunk) * self._chunk if end < self.shape[-2] else end
        if full > start:
            block = np.concatenate(held, axis=0)
            with interrupts_held():  # zarr writes on a thread of its own: never cut inside the call
                self._levels[0][t, c, z, start:full, :] = block[:full - start]
            held = [block[full - start:]] if end > full else []
            start = full
        self._pending[key] = (start, held)

    def finish(self, provenance: Mapping[str, Any] | None) -> Path:
        """Build the smaller levels and the metadata, then rename the temp folder; returns the target."""
        with interrupts_held():  # zarr writes on a thread of its own: never cut inside the call
            return self._finish(provenance)

    def _finish(self, provenance: Mapping[str, Any] | None) -> Path:
        from ome_zarr.format import FormatV05
        from ome_zarr.writer import write_multiscales_metadata

        from labelfree_app.io.ome_zarr import PROVENANCE_KEY, _replace_folder, build_level
        from labelfree_app.io.provenance import provenance_block

        for index in range(1, len(self._levels)):
            build_level(self._levels[index - 1], self._levels[index], self._chunk)
        axes = "TCZYX"
        datasets = []
        for index in range(len(self._levels)):
            factor = 2.0 ** index
            scale = [1.0, 1.0, self._sizes.get("Z", 1.0), self._sizes.get("Y", 1.0) * factor,
                     self._sizes.get("X", 1.0) * factor]
            datasets.append({"path": f"s{index}", "coordinateTransformations": [{"type": "scale", "scale": scale}]})
        axes_meta = [{"name": a.lower(), "type": {"T": "time", "C": "channel"}.get(a, "space"),
                      **({"unit": "micrometer"} if a in "ZYX" and a in self._sizes else {})} for a in axes]
        write_multiscales_metadata(self._group, datasets, fmt=FormatV05(), axes=axes_meta, name=self.path.name,
                                   metadata={"omero": {"channels": [{"label": n, "active": True}
                                                                    for n in self._names]}})
        self._group.attrs[PROVENANCE_KEY] = {"provenance": provenance_block(provenance)}
        try:
            _replace_folder(self._temp, self.path)
        except OSError as exc:
            raise write_error(exc, self.path) from exc
        self._finished = True
        return self.path

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if not self._finished:
            shutil.rmtree(self._temp, ignore_errors=True)
