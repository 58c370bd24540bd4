"""Checks and conversions on pixel arrays shared by the TIFF and PNG readers."""

from __future__ import annotations

from math import prod
from pathlib import Path

import numpy as np

from labelfree_app.errors import ChannelError, EmptyImageError, ImageTooLargeError, RGBImageError, UnsupportedDtypeError

# Rec. 709 luma weights, as scikit-image's rgb2gray uses.
LUMINANCE_WEIGHTS = (0.2125, 0.7154, 0.0721)
RGB_NAMES = ("red", "green", "blue", "alpha")


def check_dtype(dtype: np.dtype, path: Path) -> None:
    """Raise UnsupportedDtypeError for pixel types other than integers and real floats."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "uif":
        kind = {"b": "1-bit (boolean)", "c": "complex"}.get(dtype.kind, str(dtype))
        raise UnsupportedDtypeError(
            f"{path} holds {kind} pixels, which LabelFree cannot use; "
            "save it as 8-bit, 16-bit or 32-bit float grayscale.",
            path=path,
        )


def native(data: np.ndarray) -> np.ndarray:
    """The same values in native byte order (big-endian files arrive swapped)."""
    if data.dtype.isnative:
        return data
    return data.astype(data.dtype.newbyteorder("="))


def check_has_pixels(data: np.ndarray, path: Path | None) -> None:
    """Raise EmptyImageError when there are no pixels, or no finite value in a float image."""
    where = str(path) if path is not None else "The image"
    if data.size == 0:
        raise EmptyImageError(f"{where} contains no pixels.", path=path)
    if data.dtype.kind != "f":
        return
    # Plane by plane, so a large stack never needs a full-size boolean temporary.
    for index in np.ndindex(data.shape[:-2]):
        if np.isfinite(data[index]).any():
            return
    raise EmptyImageError(f"{where} holds no finite pixel value (all NaN or infinite).", path=path)


def check_rgb_choice(rgb: str | int, n_samples: int, path: Path) -> None:
    """Raise unless ``rgb`` says how to make an RGB(A) image grayscale: "luminance" or an index."""
    if isinstance(rgb, str):
        if rgb == "error":
            raise RGBImageError(
                f"{path} is an RGB colour image, not a grayscale one; add --rgb luminance to convert it "
                "(or --rgb red, green or blue to take one colour), or save it as grayscale.",
                path=path,
            )
        if rgb != "luminance":
            raise ValueError(f"rgb must be 'error', 'luminance' or a sample index, not {rgb!r}")
        return
    if isinstance(rgb, (bool, np.bool_)) or not isinstance(rgb, (int, np.integer)):
        raise ValueError(f"rgb must be 'error', 'luminance' or a sample index, not {rgb!r}")
    if not 0 <= int(rgb) < n_samples:
        names = ", ".join(f"{i}: {name}" for i, name in enumerate(RGB_NAMES[:n_samples]))
        raise ChannelError(f"{path} has no colour channel {int(rgb)}; its colour channels are {names}.", path=path)


def reduce_rgb(data: np.ndarray, sample_axis: int, rgb: str | int, path: Path) -> np.ndarray:
    """Turn an RGB(A) sample axis into grayscale as ``rgb`` asks: "luminance" or a sample index."""
    check_rgb_choice(rgb, data.shape[sample_axis], path)
    if rgb == "luminance":
        return _luminance(data, sample_axis)
    return np.take(data, int(rgb), axis=sample_axis)


def _luminance(data: np.ndarray, sample_axis: int) -> np.ndarray:
    moved = np.moveaxis(data, sample_axis, -1)
    work_dtype = np.float64 if data.dtype == np.float64 else np.float32
    grey = moved[..., :3].astype(work_dtype) @ np.asarray(LUMINANCE_WEIGHTS, dtype=work_dtype)
    if data.dtype.kind in "ui":
        info = np.iinfo(data.dtype)
        return np.clip(np.rint(grey), info.min, info.max).astype(data.dtype)
    return grey


def check_fits_in_memory(path: Path, shape: tuple[int, ...], dtype: np.dtype, divisor: int = 1) -> None:
    """Refuse, before allocating, an image whose pixels (as its header claims them) would not fit in
    the free memory: a damaged or hostile header can claim 100000×100000 pixels in a few hundred bytes."""
    import psutil

    from labelfree_app.io.atomic import human_bytes

    needed = prod(shape) * np.dtype(dtype).itemsize // max(divisor, 1)
    available = psutil.virtual_memory().available
    if needed > 0.8 * available:
        dims = "×".join(str(n) for n in shape)
        raise ImageTooLargeError(
            f"{path} says it holds {dims} pixels ({human_bytes(needed)}), more than the free memory "
            f"({human_bytes(available)}); crop or split it, or if the file is small, its header is damaged.",
            path=path)
