"""Does the predicted uncertainty mean something? Two plain figures.

Given a mean prediction, a per-pixel variance (over diffusion samples or test-time
augmentations) and the true target, all in the same units:

* ``within_1sigma`` / ``within_2sigma``: the fraction of pixels whose error |target − mean| is at
  most 1 / 2 predicted standard deviations. If the samples spread like the real uncertainty
  (Gaussian), these are about 0.68 / 0.95; much lower means over-confident, higher under-confident.
* ``std_error_spearman``: cut the image into non-overlapping ``patch``×``patch`` squares (per
  plane in 3D); the Spearman rank correlation, over squares, between the mean predicted std and
  the RMS error. High means the uncertainty map points at where the prediction is wrong.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Calibration:
    within_1sigma: float
    within_2sigma: float
    std_error_spearman: float
    patch: int
    n_patches: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def uncertainty_calibration(
    mean: np.ndarray, variance: np.ndarray, target: np.ndarray, *, patch: int = 32
) -> Calibration:
    """Calibration figures for arrays of the same shape (any leading axes, last two are Y, X)."""
    mean = np.asarray(mean, dtype=np.float64)
    std = np.sqrt(np.maximum(np.asarray(variance, dtype=np.float64), 0.0))
    error = np.abs(np.asarray(target, dtype=np.float64) - mean)
    within1 = float(np.mean(error <= std))
    within2 = float(np.mean(error <= 2 * std))
    std_means, rms_errors = patch_means(std, patch), np.sqrt(patch_means(error**2, patch))
    rho = spearman(std_means, rms_errors)
    return Calibration(within1, within2, rho, patch, int(std_means.size))


def patch_means(array: np.ndarray, patch: int) -> np.ndarray:
    """Means over non-overlapping patch×patch squares of the last two axes (edges dropped)."""
    y, x = array.shape[-2:]
    ny, nx = y // patch, x // patch
    if ny == 0 or nx == 0:
        return np.zeros(0)
    lead = array.reshape(-1, y, x)[:, : ny * patch, : nx * patch]
    blocks = lead.reshape(lead.shape[0], ny, patch, nx, patch)
    return blocks.mean(axis=(2, 4)).ravel()


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (NaN with fewer than 3 values or a constant input)."""
    if a.size < 3:
        return math.nan
    from scipy.stats import rankdata

    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])
