"""Huge planes for a viewer: a block-mean overview read band by band, and full-resolution regions.

A (Z, Y, X) volume may be lazy (``io.lazy.LazyArray``, a TIFF opened with ``lazy=True``) or a
numpy array; only ``volume[z, y0:y1, :]`` bands and ``volume[:, y0:y1, x0:x1]`` regions are ever
converted, so memory stays at one band plus the overview however large the image is.

The overview is a block mean (each overview pixel is the mean of the finite pixels of one
``factor``×``factor`` block), not a stride: every tile or strip of the file has to be decoded
anyway when the factor is smaller than a tile, so a mean costs no more reading than a stride,
and it shows what the block holds (no aliasing of fine texture or noise, no single hot pixel
standing for 64 pixels). Blocks at the right and bottom edges may be partial; their mean is over
the pixels they hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

# Planes with more pixels than this (8192², 256 MiB as float32) are shown as an overview.
LARGE_PLANE_PIXELS = 64 * 1024 * 1024
# The overview's longest side at most (its total pixels, all planes together, also at most its square).
OVERVIEW_MAX_SIDE = 4096
# Working memory of one band while the overview is built (float32 band and its block sums).
OVERVIEW_BAND_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Overview:
    """A downsampled (Z, h, w) float32 volume; overview pixel (i, j) covers full-resolution rows
    ``i*factor:(i+1)*factor`` and columns ``j*factor:(j+1)*factor`` of ``full_shape`` (Z, Y, X)."""

    pixels: np.ndarray
    factor: int
    full_shape: tuple[int, int, int]


def plane_pixels(shape: tuple[int, ...]) -> int:
    """Pixels of one (Y, X) plane of an array whose last two axes are Y and X."""
    return int(shape[-1]) * int(shape[-2])


def is_large(shape: tuple[int, ...], limit: int = LARGE_PLANE_PIXELS) -> bool:
    """Whether a plane of this shape is too large to show whole (more than ``limit`` pixels)."""
    return plane_pixels(shape) > limit


def overview_factor(shape_zyx: tuple[int, int, int], max_side: int = OVERVIEW_MAX_SIDE) -> int:
    """The smallest integer block size that brings the longest side to ``max_side`` or less and
    all planes together to ``max_side²`` pixels or less (a deep stack gets a coarser overview)."""
    depth, height, width = (max(1, int(n)) for n in shape_zyx)
    factor = max(1, math.ceil(max(height, width) / max_side))
    while depth * math.ceil(height / factor) * math.ceil(width / factor) > max_side * max_side:
        factor += 1
    return factor


def band_rows(volume: Any, factor: int, budget_bytes: int = OVERVIEW_BAND_BYTES) -> int:
    """Rows read at once: as many as the budget allows (at least ``factor``), rounded down to the
    source's row chunks when it has them (each tile or strip is then decoded once) or else to
    ``factor``; a band is never less than one row of chunks."""
    width = int(volume.shape[-1])
    fitting = max(1, budget_bytes // max(1, 4 * width))
    chunks = getattr(volume, "chunks", None)
    step = int(chunks[-2][0]) if chunks else factor
    return max(step, fitting // step * step, factor)


def block_mean(band: np.ndarray, factor: int) -> np.ndarray:
    """Mean of the finite pixels of each ``factor``×``factor`` block of a 2D band (NaN where none)."""
    rows, cols = band.shape
    out_rows, out_cols = -(-rows // factor), -(-cols // factor)
    padded = np.zeros((out_rows * factor, out_cols * factor), dtype=np.float32)
    padded[:rows, :cols] = band
    shape = (out_rows, factor, out_cols, factor)
    if np.issubdtype(band.dtype, np.floating):
        valid = np.isfinite(padded)
        valid[rows:], valid[:, cols:] = False, False
        padded[~valid] = 0.0
        counts = valid.reshape(shape).sum(axis=(1, 3))
    else:  # every pixel counts: only edge blocks hold fewer than factor²
        along_y = np.minimum(factor, rows - factor * np.arange(out_rows))
        along_x = np.minimum(factor, cols - factor * np.arange(out_cols))
        counts = np.outer(along_y, along_x)
    sums = padded.reshape(shape).sum(axis=(1, 3), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts).astype(np.float32)


def build_overview(volume: Any, *, max_side: int | None = None, factor: int | None = None,
                   budget_bytes: int = OVERVIEW_BAND_BYTES,
                   should_stop: Callable[[], bool] = lambda: False,
                   progress: Callable[[int, int], None] | None = None) -> Overview:
    """The block-mean overview of a (Z, Y, X) volume (lazy or not), read one band of rows at a time
    (``band_rows``; the rows of a block that a band cuts short are kept for the next band).

    ``should_stop`` is asked between bands; when it says yes, the overview built so far is returned
    (the rest stays NaN). ``progress(done, total)`` is told after each band. ``max_side`` defaults
    to ``OVERVIEW_MAX_SIDE`` (read when called)."""
    depth, height, width = (int(n) for n in volume.shape[-3:])
    factor = factor or overview_factor((depth, height, width), max_side or OVERVIEW_MAX_SIDE)
    rows = band_rows(volume, factor, budget_bytes)
    pixels = np.full((depth, -(-height // factor), -(-width // factor)), np.nan, dtype=np.float32)
    total, done = depth * -(-height // rows), 0
    for z in range(depth):
        carry = np.empty((0, width), dtype=volume.dtype)  # rows of a block the last band cut short
        for y0 in range(0, height, rows):
            if should_stop():
                return Overview(pixels, factor, (depth, height, width))
            band = np.asarray(volume[z, y0:y0 + rows, :])
            if carry.shape[0]:
                band = np.concatenate([carry, band])
            first = y0 - carry.shape[0]  # a multiple of factor
            whole = band.shape[0] if y0 + rows >= height else band.shape[0] // factor * factor
            if whole:
                pixels[z, first // factor:(first + whole + factor - 1) // factor] = block_mean(band[:whole], factor)
            carry = band[whole:]
            done += 1
            if progress is not None:
                progress(done, total)
    return Overview(pixels, factor, (depth, height, width))


def clamp_region(shape_yx: tuple[int, int], y0: float, y1: float, x0: float, x1: float) -> tuple[int, int, int, int]:
    """Whole-pixel bounds inside the image: (y0, y1, x0, x1) with 0 <= y0 <= y1 <= Y, likewise x."""
    height, width = int(shape_yx[0]), int(shape_yx[1])
    top, left = min(max(0, math.floor(y0)), height), min(max(0, math.floor(x0)), width)
    bottom, right = min(max(top, math.ceil(y1)), height), min(max(left, math.ceil(x1)), width)
    return top, bottom, left, right


def read_region(volume: Any, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Full-resolution pixels ``volume[:, y0:y1, x0:x1]`` of a (Z, Y, X) volume as float32 (Z, h, w)."""
    top, bottom, left, right = clamp_region(tuple(volume.shape[-2:]), y0, y1, x0, x1)
    return np.asarray(np.asarray(volume[:, top:bottom, left:right]), dtype=np.float32)
