"""Test-time augmentation: the flips (and, in 2D, 90° rotations) a U-Net runs under, each with its inverse."""

from __future__ import annotations

from typing import Any

import numpy as np


def tta_transforms(dims: int) -> list[tuple[Any, Any]]:
    """Flip (and for 2D, rot90) transforms over the last axes, each with its inverse."""
    y, x = -2, -1
    transforms: list[tuple[Any, Any]] = []
    flips = [(), (x,), (y,), (y, x)]
    for axes in flips:
        transforms.append((_flip(axes), _flip(axes)))
    if dims == 2:
        for axes in flips:
            fwd = _flip(axes)
            transforms.append(
                (lambda a, f=fwd: np.rot90(f(a), 1, axes=(y, x)), lambda a, f=fwd: f(np.rot90(a, -1, axes=(y, x))))
            )
    return transforms


def _flip(axes: tuple[int, ...]) -> Any:
    return (lambda a: np.flip(a, axis=axes)) if axes else (lambda a: a)
