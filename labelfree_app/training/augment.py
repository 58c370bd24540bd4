"""Flips and quarter turns in the YX plane, applied identically to input and target patches,
an optional brightness/contrast jitter of the input alone, and the input-only changes that tell
microscopes apart (gamma, defocus blur, noise; ``augment_input``) and zooms (``zoom_window``).

Z is never flipped: defocus in transmitted light is not symmetric about the focal plane.
"""

from __future__ import annotations

import numpy as np

from labelfree_app.training.config import AugmentSettings


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


def augment_input(source: np.ndarray, rng: np.random.Generator, settings: AugmentSettings) -> np.ndarray:
    """Gamma, defocus blur and noise on a normalized input patch (C, *spatial); the target is left alone.

    The noise's std is a fraction of the patch's own std, so it is as strong for any normalization.
    Gamma acts on the patch's own range (so the curve bends the contrast, not the offset); blur is
    Gaussian in Y and X only, as defocus of another microscope would be.
    """
    from scipy.ndimage import gaussian_filter

    out = np.asarray(source, dtype=np.float32)
    if settings.gamma > 0:
        low, high = float(out.min()), float(out.max())
        if high > low:
            gamma = float(np.exp(rng.uniform(-settings.gamma, settings.gamma)))
            out = (low + (high - low) * ((out - low) / (high - low)) ** gamma).astype(np.float32)
    if settings.blur_sigma > 0 and rng.random() < 0.5:
        sigma = float(rng.uniform(0.0, settings.blur_sigma))
        out = gaussian_filter(out, sigma=[0.0] * (out.ndim - 2) + [sigma, sigma]).astype(np.float32)
    if settings.vignetting > 0 and rng.random() < 0.5:
        out = out * smooth_field(out.shape[-2:], rng, settings.vignetting)
    if settings.polarity > 0 and rng.random() < settings.polarity:
        out = float(out.max()) + float(out.min()) - out
    if settings.quantize > 0 and rng.random() < settings.quantize:
        low, high = float(out.min()), float(out.max())
        if high > low:
            out = low + np.round((out - low) / (high - low) * 255.0) * ((high - low) / 255.0)
    if settings.noise > 0:
        std = float(rng.uniform(0.0, settings.noise)) * float(out.std())
        out = out + rng.normal(0.0, std, size=out.shape).astype(np.float32)
    return np.ascontiguousarray(out, dtype=np.float32)


def smooth_field(shape: tuple[int, ...], rng: np.random.Generator, strength: float) -> np.ndarray:
    """A smooth positive field (Y, X) around 1: a radial fall-off from a random centre plus a tilt,
    as vignetting and uneven illumination of a transmitted-light field look."""
    ny, nx = shape
    yy, xx = np.meshgrid(np.linspace(-1, 1, ny, dtype=np.float32), np.linspace(-1, 1, nx, dtype=np.float32),
                         indexing="ij")
    cy, cx = rng.uniform(-1.5, 1.5, size=2)
    radial = ((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0
    tilt = rng.uniform(-1, 1) * yy + rng.uniform(-1, 1) * xx
    field = 1.0 - strength * float(rng.uniform(0, 1)) * radial + 0.25 * strength * float(rng.uniform(0, 1)) * tilt
    return np.clip(field, 0.2, None).astype(np.float32)


def stretch_if_empty(source: np.ndarray, target: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    """With probability ``share``, stretch a cell-free patch's input over its own 1-99.8 percentiles.

    A patch is cell-free when 99 % of its target (z-scored over the whole field) lies below the
    field's mean. A whole image of empty medium, normalized by its own percentiles at prediction
    time, shows its noise at full contrast; this teaches the network that such texture is background.
    """
    if share <= 0 or rng.random() >= share or float(np.percentile(target, 99)) >= 0.0:
        return source
    low, high = np.percentile(source, (1.0, 99.8))
    if high <= low:
        return source
    return ((source - low) / (high - low)).astype(np.float32)


def zoom_window(window: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Resize the Y and X axes of ``window`` (C, *spatial) to ``shape`` (bilinear, edges aligned)."""
    import torch
    import torch.nn.functional as F

    if tuple(window.shape[-2:]) == tuple(shape):
        return np.ascontiguousarray(window, dtype=np.float32)
    lead = window.shape[:-2]
    flat = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32)).reshape(1, -1, *window.shape[-2:])
    out = F.interpolate(flat, size=tuple(shape), mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(*lead, *shape).numpy()
