"""TIFF reading with tifffile: file axes mapped to (C, Z, Y, X), one channel read plane by plane.

tifffile does not raise on many kinds of damage (a truncated IFD chain gives a partial series and
an ERROR log record), so every read runs under ``captured_tifffile_log`` and any ERROR record, a
missing page, or pixel data past the end of the file is reported as a CorruptImageError.
"""

from __future__ import annotations

import logging
import struct
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import tifffile

from labelfree_app.errors import CorruptImageError, FileAccessError, LabelFreeError, UnsupportedFormatError
from labelfree_app.io import tiff_metadata
from labelfree_app.io.channels import clean_channel_names, resolve_channel_index
from labelfree_app.io.image import Image, to_canonical
from labelfree_app.io.pixels import (check_dtype, check_fits_in_memory, check_has_pixels, check_rgb_choice, native,
                                     reduce_rgb)

_RGB_PHOTOMETRIC = (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.YCBCR)
_DIRECT_AXES = {"T": "T", "C": "C", "Z": "Z", "Y": "Y", "X": "X", "E": "C"}
# Where an axis tifffile cannot name ('Q' other, 'I' sequence, ...) goes, first free wins.
_UNNAMED_AXIS_TARGETS = ("Z", "T", "C")


@dataclass
class TifffileLog(logging.Filter):
    """Collects (and silences) tifffile log records raised by one thread."""

    thread: int = field(default_factory=threading.get_ident)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True
        target = self.errors if record.levelno >= logging.ERROR else self.warnings
        target.append(record.getMessage())
        return False


@contextmanager
def captured_tifffile_log() -> Iterator[TifffileLog]:
    logger = logging.getLogger("tifffile")
    capture = TifffileLog()
    logger.addFilter(capture)
    try:
        yield capture
    finally:
        logger.removeFilter(capture)


def corrupt(path: Path, reason: str) -> CorruptImageError:
    return CorruptImageError(
        f"{path} is damaged or incomplete ({reason}); copy or export the file again.", path=path
    )


@contextmanager
def tifffile_failures_as_corrupt(path: Path, reason: str) -> Iterator[None]:
    """Turn whatever tifffile raises on damaged data into a CorruptImageError.

    On malformed metadata tifffile's parsers raise KeyError, TypeError, ZeroDivisionError,
    AssertionError and more (found by fuzzing), so the catch is deliberately broad. Our own
    errors and MemoryError pass through; the original exception stays chained for debugging.
    """
    try:
        yield
    except (LabelFreeError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001
        raise corrupt(path, reason) from exc


def _raise_if_logged_errors(log: TifffileLog, path: Path) -> None:
    if log.errors:
        raise corrupt(path, "its TIFF structure is broken")


@dataclass(frozen=True)
class AxisLayout:
    """tifffile's series axes and the canonical axis each maps to ("S" marks RGB samples)."""

    series_axes: str
    targets: str
    shape: tuple[int, ...]

    def size(self, target: str) -> int:
        return self.shape[self.targets.index(target)] if target in self.targets else 1


def map_axes(series_axes: str, shape: tuple[int, ...], *, is_rgb: bool, path: Path) -> AxisLayout:
    """Map tifffile axis letters to T/C/Z/Y/X; RGB samples stay "S", other samples are channels."""
    targets: list[str | None] = []
    for letter, size in zip(series_axes, shape):
        if letter == "S":
            targets.append("S" if is_rgb and size in (3, 4) else "C")
        else:
            targets.append(_DIRECT_AXES.get(letter))
    for position, target in enumerate(targets):
        if target is None:
            free = [axis for axis in _UNNAMED_AXIS_TARGETS if axis not in targets]
            if not free:
                break
            targets[position] = free[0]
    if None in targets or len(set(targets)) != len(targets) or "Y" not in targets or "X" not in targets:
        raise UnsupportedFormatError(
            f"{path} has image dimensions {series_axes} {shape} that LabelFree cannot map to "
            "channels, z-planes and time points; save it as an OME-TIFF or ImageJ hyperstack.",
            path=path,
        )
    return AxisLayout(series_axes=series_axes, targets="".join(t for t in targets if t), shape=tuple(shape))


def read_tiff(path: Path, *, channel: int | str | None, rgb: str | int, lazy: bool = False) -> Image:
    """Read the first image series of a TIFF; see ``labelfree_app.io.read_image``.

    ``lazy``: a big (``regions.LAZY_MIN_BYTES``) non-RGB series is opened lazily (``io.regions``)."""
    with captured_tifffile_log() as log:
        try:
            tif = tifffile.TiffFile(path)
        except OSError as exc:
            raise FileAccessError(f"{path} cannot be read ({exc.strerror or exc}).", path=path) from exc
        except Exception as exc:  # noqa: BLE001 - see tifffile_failures_as_corrupt
            raise corrupt(path, "its TIFF header cannot be parsed") from exc
        with tif:
            with tifffile_failures_as_corrupt(path, "its image series cannot be parsed"):
                series = tif.series[0] if tif.series else None
                n_file_pages = count_ifds(tif, path)
            _raise_if_logged_errors(log, path)
            if series is None or prod(series.shape) == 0:
                raise corrupt(path, "it holds no readable image")
            # One IFD for many planes is a valid contiguous layout (ImageJ > 4 GB); more IFDs
            # than one but fewer than planes means the chain was cut short.
            if not series.is_multifile and 1 < n_file_pages < _n_planes(series):
                raise corrupt(path, f"only {n_file_pages} of {_n_planes(series)} image planes are present")
            return _read_series(tif, series, path, channel=channel, rgb=rgb, log=log, lazy=lazy)


def count_ifds(tif: tifffile.TiffFile, path: Path) -> int:
    """Walk the top-level IFD chain ourselves; CorruptImageError if it leaves the file or loops.

    tifffile infers the offsets of uniform IFDs without reading them, so its page count can
    include IFDs that a truncated file no longer holds.
    """
    fmt = tif.tiff
    handle = tif.filehandle
    size = handle.size
    offset = tif.pages.first.offset
    seen: set[int] = set()
    while offset:
        if offset in seen:
            raise corrupt(path, "its image directories form a loop")
        seen.add(offset)
        if offset + fmt.tagnosize > size:
            raise corrupt(path, "the file ends inside its image directories")
        handle.seek(offset)
        (n_tags,) = struct.unpack(fmt.tagnoformat, handle.read(fmt.tagnosize))
        next_pointer = offset + fmt.tagnosize + n_tags * fmt.tagsize
        if next_pointer + fmt.offsetsize > size:
            raise corrupt(path, "the file ends inside its image directories")
        handle.seek(next_pointer)
        (offset,) = struct.unpack(fmt.offsetformat, handle.read(fmt.offsetsize))
    return len(seen)


def _is_rgb(series: tifffile.TiffPageSeries) -> bool:
    return series.keyframe.photometric in _RGB_PHOTOMETRIC


def _read_series(
    tif: tifffile.TiffFile,
    series: tifffile.TiffPageSeries,
    path: Path,
    *,
    channel: int | str | None,
    rgb: str | int,
    log: TifffileLog,
    lazy: bool = False,
) -> Image:
    check_dtype(series.dtype, path)
    layout = map_axes(series.axes, tuple(series.shape), is_rgb=_is_rgb(series), path=path)
    if "S" in layout.targets:
        check_rgb_choice(rgb, layout.size("S"), path)
    with tifffile_failures_as_corrupt(path, "its metadata cannot be parsed"):
        meta = _file_metadata(tif, series, layout)
    _check_plane_count(series, meta, path)
    names = clean_channel_names(meta.channel_names, layout.size("C"))
    channel_info = meta.channel_info if meta.channel_info and len(meta.channel_info) == len(names) else None
    picked = None if channel is None else resolve_channel_index(names, channel, path=path)
    from labelfree_app.io.regions import LAZY_MIN_BYTES, lazy_series

    lazy = lazy and "S" not in layout.targets and prod(series.shape) * series.dtype.itemsize > LAZY_MIN_BYTES
    if lazy:  # one tile or strip is decoded at a time, so that is what must fit (else: the usual sentence)
        page = series.keyframe
        rows = page.tilelength if page.is_tiled else min(page.rowsperstrip or page.imagelength, page.imagelength)
        cols = page.tilewidth if page.is_tiled else page.imagewidth
        chunk = rows * cols * max(1, page.samplesperpixel) * series.dtype.itemsize
        import psutil

        if chunk > 0.25 * psutil.virtual_memory().available:
            check_fits_in_memory(path, tuple(series.shape), series.dtype)
            lazy = False
    if not lazy:
        check_fits_in_memory(path, tuple(series.shape), series.dtype,
                             layout.size("C") if picked is not None and "C" in layout.targets else 1)
    with tifffile_failures_as_corrupt(path, "its pixel data cannot be decoded"):
        if lazy:
            pixels = _lazy_pixels(tif, series, layout, picked, path, lazy_series)
        elif picked is None or "C" not in layout.targets:
            pixels = _read_all(tif, series, path)
        else:
            pixels = _read_channel(tif, series, layout, picked, path)
    _raise_if_logged_errors(log, path)
    if not lazy:
        pixels = native(pixels)
    targets = layout.targets
    if "S" in targets:
        pixels = reduce_rgb(pixels, targets.index("S"), rgb, path)
        targets = targets.replace("S", "")
    data, axes = to_canonical(pixels, targets)
    if not lazy:  # a lazy float image with no finite value is refused when normalized
        check_has_pixels(data, path)

    metadata: dict[str, object] = {
        "format": meta.format,
        "source_axes": series.axes,
        "source_shape": tuple(series.shape),
        "byteorder": "big" if tif.byteorder == ">" else "little",
        "bigtiff": tif.is_bigtiff,
        "compression": _compression_name(series.keyframe.compression),
        "n_series": len(tif.series),
    }
    if picked is not None:
        metadata["source_channel_index"] = picked
        names = (names[picked],)
        channel_info = (channel_info[picked],) if channel_info else None
    if channel_info:
        metadata["channel_info"] = [dict(info) for info in channel_info]
    if "S" in layout.targets:
        metadata["rgb"] = rgb
    if log.warnings:
        metadata["reader_warnings"] = list(log.warnings)
    return Image(
        data=data,
        axes=axes,
        channel_names=names,
        pixel_size_um=dict(meta.pixel_size_um),
        path=path,
        metadata=metadata,
    )


def _lazy_pixels(tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, layout: AxisLayout,
                 picked: int | None, path: Path, open_lazy: Any) -> Any:
    """The series as a lazy array, only ``picked`` kept on the C axis; extents checked first."""
    _check_series_extent(tif, series, path)
    pixels = open_lazy(tif, series, path)
    if picked is not None and "C" in layout.targets:
        axis = layout.targets.index("C")
        pixels = pixels[(slice(None),) * axis + (slice(picked, picked + 1),)]
    return pixels


def _compression_name(value: int) -> str:
    try:
        return tifffile.COMPRESSION(int(value)).name.lower()
    except ValueError:
        return str(value)


def _file_metadata(
    tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, layout: AxisLayout
) -> tiff_metadata.FileMetadata:
    if series.kind == "ome" and tif.ome_metadata:
        return tiff_metadata.ome_metadata(tif.ome_metadata)
    if series.kind == "imagej" and tif.imagej_metadata is not None:
        planes_per_channel = layout.size("T") * layout.size("Z")
        return tiff_metadata.imagej_metadata(tif, layout.size("C"), planes_per_channel)
    metamorph = tiff_metadata.metamorph_metadata(tif)
    if metamorph is not None:
        return metamorph
    return tiff_metadata.FileMetadata(
        format="tiff", pixel_size_um=tiff_metadata.resolution_tag_sizes(series.keyframe)
    )


def _page_shape(series: tifffile.TiffPageSeries) -> tuple[int, ...]:
    return tuple(series.keyframe.shape)


def _n_planes(series: tifffile.TiffPageSeries) -> int:
    return prod(series.shape) // max(1, prod(_page_shape(series)))


def _check_plane_count(series: tifffile.TiffPageSeries, meta: tiff_metadata.FileMetadata, path: Path) -> None:
    expected = meta.expected_planes
    if expected is not None and expected != _n_planes(series):
        raise corrupt(path, f"its metadata lists {expected} image planes but {_n_planes(series)} were found")


def _data_end(page: tifffile.TiffPage | tifffile.TiffFrame) -> int:
    ends = [offset + count for offset, count in zip(page.dataoffsets, page.databytecounts)]
    return max(ends, default=0)


def _check_page_extents(series: tifffile.TiffPageSeries, indices: Iterable[int], path: Path) -> None:
    """Every page exists and its pixel data lies inside its file."""
    for index in indices:
        page = series[int(index)]
        if page is None:
            raise corrupt(path, f"image plane {int(index)} is missing")
        if _data_end(page) > page.parent.filehandle.size:
            raise corrupt(path, "the file ends before its pixel data does")


def _check_series_extent(tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, path: Path) -> None:
    """CorruptImageError unless every plane of ``series`` is present and its data lies inside the file."""
    if series.dataoffset is not None:
        _check_contiguous_extent(tif, series, path)
    else:
        if len(series) < _n_planes(series):
            raise corrupt(path, f"only {len(series)} of {_n_planes(series)} image planes are present")
        _check_page_extents(series, range(len(series)), path)


def _check_contiguous_extent(tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, path: Path) -> None:
    end = series.dataoffset + prod(series.shape) * series.dtype.itemsize
    if end > tif.filehandle.size:
        raise corrupt(path, "the file ends before its pixel data does")


def _read_all(tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, path: Path) -> np.ndarray:
    _check_series_extent(tif, series, path)
    pixels = series.asarray()
    if tuple(pixels.shape) != tuple(series.shape):
        raise corrupt(path, "its pixel data do not fill the image")
    return pixels


def _read_channel(
    tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, layout: AxisLayout, channel: int, path: Path
) -> np.ndarray:
    """Series-shaped array with only ``channel`` on the C axis, reading only that channel's planes."""
    page_shape = _page_shape(series)
    lead_shape = tuple(series.shape[: len(series.shape) - len(page_shape)])
    channel_axis = layout.targets.index("C")
    lazy = (
        series.transform is None  # a vendor transform needs the whole series
        and tuple(series.shape[len(lead_shape) :]) == page_shape
        and channel_axis < len(lead_shape)
    )
    if lazy:
        plane_ids = np.take(np.arange(prod(lead_shape)).reshape(lead_shape), [channel], axis=channel_axis)
        wanted = [int(i) for i in plane_ids.ravel()]
        if series.dataoffset is not None:
            planes = _read_contiguous_planes(tif, series, wanted, path)
            return planes.reshape(plane_ids.shape + page_shape)
        if len(series) == prod(lead_shape):
            _check_page_extents(series, wanted, path)
            planes = tif.asarray(key=wanted, series=series)
            return planes.reshape(plane_ids.shape + page_shape)
    # The channel lies inside each page (planar samples) or the layout is unusual: read everything.
    return np.take(_read_all(tif, series, path), [channel], axis=channel_axis)


def _read_contiguous_planes(
    tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, plane_indices: list[int], path: Path
) -> np.ndarray:
    """Read uncompressed planes straight into the output, so memory is only what is returned."""
    _check_contiguous_extent(tif, series, path)
    native_dtype = np.dtype(series.dtype).newbyteorder("=")
    file_dtype = native_dtype.newbyteorder(tif.byteorder)
    plane_items = prod(_page_shape(series))
    plane_bytes = plane_items * native_dtype.itemsize
    out = np.empty((len(plane_indices), plane_items), dtype=native_dtype)
    for row, index in enumerate(plane_indices):
        tif.filehandle.read_array(file_dtype, plane_items, series.dataoffset + index * plane_bytes, out=out[row])
    return out
