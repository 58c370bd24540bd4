"""Reading images: ``read_image`` for TIFF and PNG, ``read_plane_series`` for a z-stack of planes."""

from __future__ import annotations

import glob
import os
import re
import stat
from pathlib import Path
from typing import Iterable, Union

import imagecodecs
import numpy as np

from labelfree_app.errors import CorruptImageError, FileAccessError, ImageReadError, UnsupportedFormatError
from labelfree_app.io.channels import default_channel_names, resolve_channel_index
from labelfree_app.io.image import Image, to_canonical
from labelfree_app.io.pixels import check_dtype, check_has_pixels, check_rgb_choice, reduce_rgb
from labelfree_app.io.tiff_reader import read_tiff

PathLike = Union[str, "os.PathLike[str]"]

TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Formats people drop on the app by mistake, so the message can say what the file is.
OTHER_SIGNATURES = {
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a zip archive",
    b"\x89HDF": "an HDF5 file",
    b"ZISRAWFILE": "a Zeiss CZI file",
    b"\x00\x00\x00\x0cjP  ": "a JPEG 2000 image",
}


def detect_format(path: Path) -> str:
    """'tiff' or 'png' from the file's first bytes; raises the matching ImageReadError otherwise."""
    try:
        if path.is_dir():
            raise FileAccessError(f"{path} is a folder, not an image file; choose a TIFF or PNG file.", path=path)
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # reading a pipe or a device would wait forever
            raise FileAccessError(f"{path} is not a regular file (a pipe, device or socket); "
                                  "choose an image file.", path=path)
        size = info.st_size
        with open(path, "rb") as handle:
            head = handle.read(16)
    except FileNotFoundError as exc:
        raise FileAccessError(f"{path} does not exist; check the path.", path=path) from exc
    except PermissionError as exc:
        raise FileAccessError(f"{path} cannot be read (permission denied); check its permissions or its "
                              "folder's.", path=path) from exc
    except RuntimeError as exc:  # pathlib's "Symlink loop" (Python < 3.13)
        raise FileAccessError(f"{path} is a symbolic link that leads back to itself (a loop); give the real "
                              "file instead.", path=path) from exc
    except OSError as exc:
        raise FileAccessError(f"{path} cannot be read ({exc.strerror or exc}).", path=path) from exc
    if size == 0:
        raise CorruptImageError(f"{path} is empty (0 bytes); copy or export the file again.", path=path)
    if head.startswith(TIFF_SIGNATURES):
        return "tiff"
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if any(signature.startswith(head) for signature in (*TIFF_SIGNATURES, PNG_SIGNATURE)):
        raise CorruptImageError(f"{path} is cut off after {size} bytes; copy or export the file again.", path=path)
    what = next((name for signature, name in OTHER_SIGNATURES.items() if head.startswith(signature)), None)
    described = f"is {what}, not" if what else "is not"
    raise UnsupportedFormatError(
        f"{path} {described} a TIFF or PNG image; export it as OME-TIFF, TIFF or 16-bit PNG.", path=path
    )


def read_image(path: PathLike, *, channel: int | str | None = None, rgb: str | int = "error",
               position: str | None = None, lazy: bool = False) -> Image:
    """Read a TIFF (OME, ImageJ, MetaMorph, plain, BigTIFF) or PNG as (C, Z, Y, X) or (T, C, Z, Y, X).

    ``channel`` (name or index) reads only that channel, plane by plane, so one channel of a
    huge stack needs only that channel's memory. ``rgb`` says what to do with an RGB image:
    "error" (raise RGBImageError), "luminance", or a colour index (0 red, 1 green, 2 blue).
    An OME-Zarr folder is read lazily (``io.ome_zarr``); ``position`` ("A/1/0") picks a plate's field.
    ``lazy=True`` opens a big TIFF lazily too (``io.regions``): pixels are read region by region.
    All failures are ``labelfree_app.errors.ImageReadError`` subclasses naming the file.
    """
    path = Path(os.fspath(path)).expanduser()
    from labelfree_app.io.ome_zarr import is_ome_zarr, read_ome_zarr

    if is_ome_zarr(path):
        return read_ome_zarr(path, position=position, channel=channel)
    if detect_format(path) == "tiff":
        return read_tiff(path, channel=channel, rgb=rgb, lazy=lazy)
    return read_png(path, channel=channel, rgb=rgb)


def read_png(path: Path, *, channel: int | str | None = None, rgb: str | int = "error") -> Image:
    """Read an 8- or 16-bit PNG (16-bit is kept); RGB handled as in ``read_image``."""
    try:
        encoded = path.read_bytes()
    except OSError as exc:
        raise FileAccessError(f"{path} cannot be read ({exc.strerror or exc}).", path=path) from exc
    names = default_channel_names(1)
    if channel is not None:
        resolve_channel_index(names, channel, path=path)
    try:
        pixels = imagecodecs.png_decode(encoded)
    except (RuntimeError, ValueError) as exc:
        raise CorruptImageError(
            f"{path} is damaged or incomplete (its PNG data cannot be decoded); copy or export the file again.",
            path=path,
        ) from exc
    check_dtype(pixels.dtype, path)
    metadata: dict[str, object] = {"format": "png", "source_axes": "YXS"[: pixels.ndim], "source_shape": pixels.shape}
    if pixels.ndim == 3:
        samples = pixels.shape[2]
        if samples in (3, 4):
            check_rgb_choice(rgb, samples, path)
            pixels = reduce_rgb(pixels, 2, rgb, path)
            metadata["rgb"] = rgb
        else:
            # 1 sample is plain grey, 2 samples are grey + alpha: keep the grey.
            pixels = pixels[:, :, 0]
    data, axes = to_canonical(pixels, "YX")
    check_has_pixels(data, path)
    return Image(data=data, axes=axes, channel_names=names, pixel_size_um={}, path=path, metadata=metadata)


def natural_sort_key(text: str | Path) -> list[object]:
    """Key that sorts 'z_depth-2' before 'z_depth-10' (names or paths)."""
    return [int(part) if part.isdigit() else part.casefold() for part in re.split(r"(\d+)", str(text))]


def _expand_plane_paths(paths_or_glob: PathLike | Iterable[PathLike]) -> list[Path]:
    if isinstance(paths_or_glob, (str, os.PathLike)):
        pattern = os.path.expanduser(os.fspath(paths_or_glob))
        if glob.has_magic(pattern):
            matches = [Path(match) for match in glob.glob(pattern)]
            if not matches:
                raise FileAccessError(f"No files match {pattern}; check the folder and the pattern.")
        else:
            matches = [Path(pattern)]
    else:
        matches = [Path(os.fspath(item)).expanduser() for item in paths_or_glob]
        if not matches:
            raise FileAccessError("No image files were given for the z-stack; choose at least one file.")
    return sorted(matches, key=natural_sort_key)


def _series_channel_name(stems: list[str]) -> str:
    """The part every file name shares ('PHASE_CONTRAST' for z_depth-*_PHASE_CONTRAST), or 'C0'."""
    if len(stems) > 1:
        suffix = os.path.commonprefix([stem[::-1] for stem in stems])[::-1]
        prefix = os.path.commonprefix(stems)
        for candidate in (suffix, prefix):
            name = candidate.strip("_-. 0123456789")
            if len(name) >= 2 and any(char.isalpha() for char in name):
                return name
    return default_channel_names(1)[0]


def read_plane_series(paths_or_glob: PathLike | Iterable[PathLike], *, rgb: str | int = "error") -> Image:
    """Stack single-plane files (a glob pattern or a list, naturally sorted) into one z-stack.

    Every file must hold one plane of the same shape and pixel type; the odd one is named.
    The result has axes "CZYX" with C = 1; ``metadata["plane_paths"]`` lists the files in order.
    """
    paths = _expand_plane_paths(paths_or_glob)
    first: Image | None = None
    stack: np.ndarray | None = None
    sizes_agree = True
    for z, path in enumerate(paths):
        plane = read_image(path, rgb=rgb)
        if plane.n_timepoints * plane.n_channels * plane.shape_zyx[0] != 1:
            raise ImageReadError(
                f"{path} holds {plane.n_channels} channels and {plane.shape_zyx[0]} planes; "
                "a plane series needs files with one plane each.",
                path=path,
            )
        if first is None or stack is None:
            first = plane
            stack = np.empty((1, len(paths), *plane.shape_zyx[1:]), dtype=plane.dtype)
        elif plane.shape_zyx != first.shape_zyx or plane.dtype != first.dtype:
            raise ImageReadError(
                f"{path} is {_describe(plane)} but {first.path} is {_describe(first)}; "
                "all planes of a z-stack must have the same size and pixel type.",
                path=path,
            )
        stack[0, z] = plane.data[0, 0]
        if plane.pixel_size_um != first.pixel_size_um:
            sizes_agree = False
    assert first is not None and stack is not None
    return Image(
        data=stack,
        axes="CZYX",
        channel_names=(_series_channel_name([path.stem for path in paths]),),
        pixel_size_um={k: v for k, v in first.pixel_size_um.items() if k in ("Y", "X")} if sizes_agree else {},
        path=None,
        metadata={
            "format": first.metadata.get("format"),
            "source_axes": "ZYX",
            "plane_paths": [str(path) for path in paths],
        },
    )


def _describe(image: Image) -> str:
    _, height, width = image.shape_zyx
    return f"{width}×{height} {image.dtype}"
