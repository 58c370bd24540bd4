"""A colour composite of several predicted stains: one colour per target, added on black (or over the
grey input), each channel with its own display range and on/off. No Qt: the window's Composite panel
draws it and its Export writes it as a PNG (``write_composite_png``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

# Colours that stay apart when added: green + magenta = white where two stains meet.
STAIN_COLOURS: tuple[tuple[float, float, float], ...] = (
    (0.0, 1.0, 0.0), (1.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.3, 0.0), (0.3, 0.5, 1.0))
UNDERLAY_WEIGHT = 0.6  # the grey input under the colours: visible, never washing them out


@dataclass(frozen=True)
class ChannelLook:
    """How one stain is drawn: its colour (RGB 0..1), display range and whether it is shown."""

    colour: tuple[float, float, float]
    levels: tuple[float, float]
    visible: bool = True


def colour_for(index: int) -> tuple[float, float, float]:
    """The ``index``-th stain's colour (the table repeats after six)."""
    return STAIN_COLOURS[index % len(STAIN_COLOURS)]


def display_range(plane: np.ndarray, low_pct: float = 0.02, high_pct: float = 99.8) -> tuple[float, float]:
    """A plane's display range from percentiles of its finite pixels (as the panels' auto contrast)."""
    flat = np.asarray(plane, dtype=np.float32).ravel()
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(flat, [low_pct, high_pct])
    return float(low), float(high) if high > low else float(low) + 1.0


def _scaled(plane: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    low, high = float(levels[0]), float(levels[1])
    return np.clip((np.nan_to_num(np.asarray(plane, dtype=np.float32)) - low) / max(high - low, 1e-12), 0.0, 1.0)


def composite_rgb(planes: Sequence[np.ndarray], looks: Sequence[ChannelLook], *,
                  underlay: np.ndarray | None = None, underlay_levels: Sequence[float] | None = None) -> np.ndarray:
    """(Y, X, 3) float32 in 0..1: each shown plane scaled by its levels, times its colour, added up
    (over the grey ``underlay`` scaled by ``underlay_levels`` when given), clipped to 1."""
    if not planes:
        raise ValueError("a composite needs at least one plane")
    shape = np.shape(planes[0])
    rgb = np.zeros((*shape, 3), dtype=np.float32)
    if underlay is not None:
        levels = underlay_levels if underlay_levels is not None else display_range(underlay)
        rgb += _scaled(underlay, levels)[..., np.newaxis] * UNDERLAY_WEIGHT
    for plane, look in zip(planes, looks):
        if look.visible:
            rgb += _scaled(plane, look.levels)[..., np.newaxis] * np.asarray(look.colour, dtype=np.float32)
    return np.clip(rgb, 0.0, 1.0)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """A 0..1 RGB image as 8-bit."""
    return np.rint(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)


def write_composite_png(path: Path, rgb: np.ndarray, *, protected_paths: Sequence[Path] = ()) -> Path:
    """The composite (0..1 RGB) as an 8-bit PNG, written atomically."""
    from PIL import Image as PILImage

    from labelfree_app.io.atomic import atomic_path

    with atomic_path(Path(path), protected_paths=protected_paths) as temp:
        PILImage.fromarray(to_uint8(rgb), mode="RGB").save(temp, format="PNG")
    return Path(path)
