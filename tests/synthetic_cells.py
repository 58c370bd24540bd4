"""Synthetic cells rendered as a bright-field-like image and a nuclear stain.

Test data only: tests and benchmarks that need paired images without real files (the demo models in
tests/fixtures/models were trained on it). The product's demo input is real data (resources/demo).
It is a cartoon of optics, not a simulation: cells are ellipses with a phase delay, bright-field
contrast is a defocus (Laplacian-of-Gaussian) of that phase, nuclei are denser inner ellipses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class SyntheticPair:
    """A rendered field: bright-field input, nuclear-stain target, and the nucleus mask."""

    brightfield: np.ndarray
    nuclei: np.ndarray
    nucleus_mask: np.ndarray


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = yy - cy, xx - cx
    u = (dx * c + dy * s) / rx
    v = (-dx * s + dy * c) / ry
    return u * u + v * v


def render_cells(shape: tuple[int, int] = (512, 512), n_cells: int | None = None, seed: int = 0) -> SyntheticPair:
    """Render one 2D field of cells; deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    h, w = shape
    n_cells = n_cells if n_cells is not None else max(1, int(h * w / 4500))
    phase = np.zeros(shape, np.float32)
    stain = np.zeros(shape, np.float32)
    mask = np.zeros(shape, bool)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(n_cells):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(14, 30)
        ry, rx = r * rng.uniform(0.7, 1.0), r * rng.uniform(0.8, 1.3)
        angle = rng.uniform(0, np.pi)
        y0, y1 = int(max(0, cy - 2 * r)), int(min(h, cy + 2 * r + 1))
        x0, x1 = int(max(0, cx - 2 * r)), int(min(w, cx + 2 * r + 1))
        if y0 >= y1 or x0 >= x1:
            continue
        sl = (slice(y0, y1), slice(x0, x1))
        d_cell = _ellipse(yy[sl], xx[sl], cy, cx, ry, rx, angle)
        cell = np.clip(1.0 - d_cell, 0, None) ** 0.5
        phase[sl] += 0.6 * cell
        ncy, ncx = cy + rng.normal(0, r * 0.12), cx + rng.normal(0, r * 0.12)
        nr = rng.uniform(0.38, 0.55)
        d_nuc = _ellipse(yy[sl], xx[sl], ncy, ncx, ry * nr, rx * nr, angle + rng.normal(0, 0.3))
        nucleus = d_nuc < 1.0
        brightness = rng.uniform(0.5, 1.0)
        stain[sl] += brightness * np.clip(1.0 - d_nuc, 0, None) ** 0.3 * nucleus
        phase[sl] += 0.35 * nucleus
        mask[sl] |= nucleus
        for _ in range(rng.integers(1, 3)):  # nucleoli: dense dots inside the nucleus
            oy, ox = rng.normal(0, ry * nr * 0.35), rng.normal(0, rx * nr * 0.35)
            dot = _ellipse(yy[sl], xx[sl], ncy + oy, ncx + ox, 2.5, 2.5, 0.0) < 1.0
            phase[sl] += 0.25 * (dot & nucleus)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), 1.5)
    phase += 0.05 * texture * (phase > 0.05)
    defocus = -ndimage.gaussian_laplace(phase, sigma=2.0)
    illumination = 1.0 + 0.05 * (xx / w - 0.5) + 0.03 * (yy / h - 0.5)
    bf = illumination * (1.0 + 6.0 * defocus - 0.08 * phase)
    bf += rng.normal(0, 0.02, shape).astype(np.float32)
    stain = ndimage.gaussian_filter(stain, 1.2) + rng.normal(0, 0.01, shape).astype(np.float32)
    bf_u16 = np.clip(bf * 20000, 0, 65535).astype(np.uint16)
    stain_u16 = np.clip(stain * 30000 + 500, 0, 65535).astype(np.uint16)
    return SyntheticPair(brightfield=bf_u16, nuclei=stain_u16, nucleus_mask=mask)
