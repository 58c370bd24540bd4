"""Flips and quarter turns in the YX plane, applied identically to input and target patches,
and an optional brightness/contrast jitter of the input alone.

Z is never flipped: defocus in transmitted light is not symmetric about the focal plane.
"""

from __future__ import annotations

import numpy as np


def augment_pair(
    source: np.ndarray, target: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random Y flip, X flip and (for square YX patches) a rot90; arrays are (C, *spatial)."""
    y_axis, x_axis = source.ndim - 2, source.ndim - 1
    flip_y, flip_x = rng.random() < 0.5, rng.random() < 0.5
    turns = int(rng.integers(4))
    if flip_y:
        source, target = np.flip(source, y_axis), np.flip(target, y_axis)
    if flip_x:
        source, target = np.flip(source, x_axis), np.flip(target, x_axis)
    if turns and source.shape[y_axis] == source.shape[x_axis]:
        source = np.rot90(source, turns, axes=(y_axis, x_axis))
        target = np.rot90(target, turns, axes=(y_axis, x_axis))
    return np.ascontiguousarray(source), np.ascontiguousarray(target)


def jitter_intensity(source: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Scale the normalized input by exp(U(-s, s)) and shift it by U(-s, s).

    Stitched fields and other microscopes differ in illumination and contrast; jittering them
    teaches the network to ignore such changes. The target is left alone.
    """
    if strength <= 0:
        return source
    gain = float(np.exp(rng.uniform(-strength, strength)))
    offset = float(rng.uniform(-strength, strength))
    return (source * gain + offset).astype(np.float32, copy=False)
