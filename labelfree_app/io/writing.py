"""Writing images: OME-TIFF (default) or ImageJ TIFF with channel names, pixel sizes and provenance.

Provenance (app version, model, sampling settings, ...) is stored as JSON: in an OME
CommentAnnotation with namespace ``labelfree.provenance``, or in the ImageJ "Info" property.
``read_provenance`` reads either back.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np
import tifffile

from labelfree_app import __version__
from labelfree_app.errors import ImageWriteError
from labelfree_app.io.atomic import atomic_path
from labelfree_app.io.channels import default_channel_names
from labelfree_app.io.image import CANONICAL_AXES_WITH_TIME, to_canonical
from labelfree_app.io.provenance import provenance_block
from labelfree_app.io.reading import detect_format
from labelfree_app.io.tiff_metadata import PROVENANCE_NAMESPACE, imagej_provenance, ome_provenance
from labelfree_app.io.tiff_reader import captured_tifffile_log, tifffile_failures_as_corrupt

PathLike = Union[str, "os.PathLike[str]"]

# Above this many pixel bytes an OME-TIFF is written as BigTIFF (classic TIFF stops at 4 GiB).
BIGTIFF_THRESHOLD_BYTES = 2**32 - 2**25
# Room for IFDs and metadata on top of the pixel bytes when checking free space.
METADATA_ALLOWANCE_BYTES = 1024 * 1024
OME_DTYPES = frozenset({"uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64"})
IMAGEJ_DTYPES = frozenset({"uint8", "uint16", "int16", "float32"})
# Lossless (or, for float64, documented) conversions applied instead of refusing to write.
_WIDENED = {"float16": "float32", "int8": "int16"}
_IMAGEJ_NARROWED = {"float64": "float32"}


def write_image(
    path: PathLike,
    data: np.ndarray,
    axes: str,
    *,
    channel_names: Sequence[str] | None = None,
    pixel_size_um: Mapping[str, float] | None = None,
    provenance: Mapping[str, Any] | None = None,
    imagej: bool = False,
    protected_paths: Iterable[PathLike] = (),
    compression: str | None = None,
) -> Path:
    """Write ``data`` (axes: any order of a subset of "TCZYX" with Y and X) atomically.

    OME-TIFF by default, ImageJ hyperstack with ``imagej=True`` (uint8, uint16, int16, float32;
    float64 is stored as float32). ``compression`` is a tifffile codec name such as "zlib",
    "lzw" or "zstd". Never writes over ``protected_paths``. Returns the path written.
    Raises ImageWriteError subclasses: OverwriteInputError, OutputNotWritableError, DiskFullError.
    """
    target = Path(os.fspath(path)).expanduser()
    canonical, canonical_axes = to_canonical(np.asarray(data), axes)
    tczyx = canonical if canonical_axes == CANONICAL_AXES_WITH_TIME else canonical[np.newaxis]
    names = _check_channel_names(channel_names, tczyx.shape[1])
    sizes = _check_pixel_sizes(pixel_size_um)
    tczyx = _storable(tczyx, imagej=imagej, path=target)
    block = provenance_block(provenance)
    expected_bytes = tczyx.nbytes + METADATA_ALLOWANCE_BYTES
    with atomic_path(target, protected_paths=protected_paths, expected_bytes=expected_bytes) as temp:
        if imagej:
            _write_imagej(temp, tczyx, names, sizes, block, compression)
        else:
            _write_ome(temp, tczyx, names, sizes, block, compression, image_name=target.name)
    return target


def _check_channel_names(channel_names: Sequence[str] | None, n_channels: int) -> tuple[str, ...]:
    if channel_names is None:
        return default_channel_names(n_channels)
    names = tuple(str(name) for name in channel_names)
    if len(names) != n_channels:
        raise ValueError(f"{len(names)} channel names given for {n_channels} channels")
    return tuple(name or f"C{i}" for i, name in enumerate(names))


def _check_pixel_sizes(pixel_size_um: Mapping[str, float] | None) -> dict[str, float]:
    sizes = {str(axis).upper(): float(size) for axis, size in (pixel_size_um or {}).items()}
    for axis, size in sizes.items():
        if axis not in ("Z", "Y", "X") or not (math.isfinite(size) and size > 0):
            raise ValueError(f"pixel_size_um needs positive sizes for Z, Y or X, not {axis}={size}")
    return sizes


def _storable(data: np.ndarray, *, imagej: bool, path: Path) -> np.ndarray:
    name = data.dtype.name
    name = _WIDENED.get(name, name)
    if imagej:
        name = _IMAGEJ_NARROWED.get(name, name)
    allowed = IMAGEJ_DTYPES if imagej else OME_DTYPES
    if name not in allowed:
        kind = "an ImageJ TIFF" if imagej else "a TIFF"
        raise ImageWriteError(
            f"{path} cannot be written: {kind} cannot hold {data.dtype} pixels; "
            "convert the data to uint8, uint16 or float32 first.",
            path=path,
        )
    return data if name == data.dtype.name else data.astype(name)


def _resolution(sizes: dict[str, float]) -> tuple[float, float] | None:
    if "X" in sizes and "Y" in sizes:
        return (1e4 / sizes["X"], 1e4 / sizes["Y"])  # pixels per centimetre
    return None


def _write_ome(
    temp: Path,
    tczyx: np.ndarray,
    names: tuple[str, ...],
    sizes: dict[str, float],
    block: dict[str, Any],
    compression: str | None,
    *,
    image_name: str,
) -> None:
    metadata: dict[str, Any] = {
        "axes": CANONICAL_AXES_WITH_TIME,
        "Creator": f"LabelFree {__version__}",
        "Name": image_name,
        "Channel": {"Name": list(names)},
        "CommentAnnotation": {"Namespace": PROVENANCE_NAMESPACE, "Value": json.dumps(block)},
    }
    for axis, size in sizes.items():
        metadata[f"PhysicalSize{axis}"] = size
        metadata[f"PhysicalSize{axis}Unit"] = "µm"
    resolution = _resolution(sizes)
    tifffile.imwrite(
        temp,
        tczyx,
        ome=True,
        bigtiff=tczyx.nbytes > BIGTIFF_THRESHOLD_BYTES,
        photometric="minisblack",
        compression=compression,
        resolution=resolution,
        resolutionunit="CENTIMETER" if resolution else None,
        metadata=metadata,
    )


def _write_imagej(
    temp: Path,
    tczyx: np.ndarray,
    names: tuple[str, ...],
    sizes: dict[str, float],
    block: dict[str, Any],
    compression: str | None,
) -> None:
    n_t, n_c, n_z = tczyx.shape[:3]
    metadata: dict[str, Any] = {
        "axes": "TZCYX",
        # ImageJ labels planes, not channels; a label per plane (C fastest) names the channels.
        "Labels": [names[c] for _ in range(n_t) for _ in range(n_z) for c in range(n_c)],
        "Info": json.dumps({PROVENANCE_NAMESPACE: block}),
    }
    if sizes:
        metadata["unit"] = "micron"
    if "Z" in sizes:
        metadata["spacing"] = sizes["Z"]
    has_xy = "X" in sizes and "Y" in sizes
    tifffile.imwrite(
        temp,
        np.ascontiguousarray(tczyx.transpose(0, 2, 1, 3, 4)),
        imagej=True,
        photometric="minisblack",
        compression=compression,
        resolution=(1 / sizes["X"], 1 / sizes["Y"]) if has_xy else None,  # pixels per micron
        metadata=metadata,
    )


def read_provenance(path: PathLike) -> dict[str, Any]:
    """The provenance dict stored by ``write_image``; empty when the file has none."""
    target = Path(os.fspath(path)).expanduser()
    if detect_format(target) != "tiff":
        return {}
    with captured_tifffile_log(), tifffile_failures_as_corrupt(target, "its TIFF metadata cannot be read"):
        with tifffile.TiffFile(target) as tif:
            if tif.is_ome and tif.ome_metadata:
                found = ome_provenance(tif.ome_metadata)
            elif tif.is_imagej and tif.imagej_metadata:
                found = imagej_provenance(tif.imagej_metadata)
            else:
                found = None
    return dict(found or {})
