"""How far a prediction can be trusted: an expected Pearson r with a real stain, and a trust map.

Two kinds of evidence, both cheap next to the network (a few reductions over the image):

- **The prediction itself.** A model trained with a squared error predicts the conditional mean
  of its z-scored target, so where it cannot tell, it shrinks toward the mean: the spread and
  the bright tail of the prediction fall, and a bimodal nuclei/background picture turns into a
  haze. For a diffusion model (or a U-Net with TTA) the share of the total variance that the
  mean explains, ``var(mean) / (var(mean) + mean(var))``, is what r² would be if the samples were
  calibrated.
- **The input against the training inputs.** Each 32×32 patch of the normalized input is
  described by its mean, contrast and texture scale; an ``InputProfile`` (a Gaussian fitted to
  the training patches, with their distance quantiles) turns a patch into *familiarity*: the
  share of training patches that lie at least as far from the centre. The trust map is this per
  patch; the image's novelty enters the estimate.

A ``TrustModel`` (a ridge regression fitted by ``scripts/calibrate_trust.py`` on predictions that
models made on microscopes they never saw, with interval half-widths from its leave-one-source-out
residuals) turns the features into a ``TrustEstimate``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

METHOD = "lf-trust-1"
PATCH = 32
STATS_PIXELS = 500_000  # a prediction's spread, tail and separation come from a strided sample this big
GOOD_R = 0.7
TRUSTWORTHY_R = 0.5
LEVELS = ("good", "uncertain", "not trustworthy")
_QUANTILES = 101


# --- the input against the training inputs ---------------------------------------------------
def patch_statistics(x: np.ndarray, patch: int = PATCH, below: np.ndarray | None = None) -> np.ndarray:
    """Per-patch (mean, log contrast, log texture scale) of a normalized plane (Y, X) or (C, Y, X),
    as an array (n_y, n_x, 3); channels (z-planes given as channels) are averaged first.

    ``below`` is the row under ``x`` ((X,) or (C, X)) when ``x`` is a strip of whole patch rows cut
    from a taller plane: the strip's last row then gets the vertical gradient the whole plane gives it."""
    plane = np.asarray(x, dtype=np.float32)
    if plane.ndim == 3:
        plane = plane.mean(axis=0)
    ny, nx = max(1, plane.shape[0] // patch), max(1, plane.shape[1] // patch)
    h, w = min(plane.shape[0], ny * patch), min(plane.shape[1], nx * patch)
    py, px = h // ny, w // nx
    crop = plane[: ny * py, : nx * px]
    blocks = crop.reshape(ny, py, nx, px)
    mean = blocks.mean(axis=(1, 3))
    std = blocks.std(axis=(1, 3))
    after = crop[-1:]
    if below is not None:
        row = np.asarray(below, dtype=np.float32)
        after = (row.mean(axis=0) if row.ndim == 2 else row)[None, : nx * px]
    gy = np.abs(np.diff(crop, axis=0, append=after))
    gx = np.abs(np.diff(crop, axis=1, append=crop[:, -1:]))
    grad = (gy + gx).reshape(ny, py, nx, px).mean(axis=(1, 3))
    contrast = np.log(std + 1e-3)
    texture = np.log(grad + 1e-4) - contrast  # high: fine texture or noise; low: smooth or blurred
    return np.stack([mean, contrast, texture], axis=-1).astype(np.float32)


@dataclass(frozen=True)
class InputProfile:
    """The training inputs' patch statistics: a Gaussian and the quantiles of their own distances."""

    mean: tuple[float, ...]
    inv_cov: tuple[tuple[float, ...], ...]
    distance_quantiles: tuple[float, ...]

    @classmethod
    def fit(cls, planes: Sequence[np.ndarray]) -> InputProfile:
        """Fit to normalized training inputs (each (Y, X) or (C, Y, X))."""
        stats = np.concatenate([patch_statistics(p).reshape(-1, 3) for p in planes]).astype(np.float64)
        mean = stats.mean(axis=0)
        cov = np.cov(stats, rowvar=False) + 1e-4 * np.eye(3)
        inv = np.linalg.inv(cov)
        d = _mahalanobis(stats, mean, inv)
        quantiles = np.quantile(d, np.linspace(0, 1, _QUANTILES))
        return cls(tuple(map(float, mean)), tuple(tuple(map(float, r)) for r in inv), tuple(map(float, quantiles)))

    def familiarity(self, x: np.ndarray) -> np.ndarray:
        """Per patch (n_y, n_x): the share of training patches at least as far from their centre."""
        return self.familiarity_of(patch_statistics(x))

    def familiarity_of(self, stats: np.ndarray) -> np.ndarray:
        """``familiarity`` from patch statistics (n_y, n_x, 3) already computed."""
        stats = np.asarray(stats, dtype=np.float64)
        d = _mahalanobis(stats.reshape(-1, 3), np.asarray(self.mean), np.asarray(self.inv_cov))
        levels = np.linspace(0, 1, len(self.distance_quantiles))
        share_closer = np.interp(d, np.asarray(self.distance_quantiles), levels, left=0.0, right=1.0)
        return (1.0 - share_closer).reshape(stats.shape[:2]).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "inv_cov": [list(r) for r in self.inv_cov],
                "distance_quantiles": list(self.distance_quantiles)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputProfile:
        mean = tuple(float(v) for v in data["mean"])
        inv = tuple(tuple(float(v) for v in row) for row in data["inv_cov"])
        quantiles = tuple(float(v) for v in data["distance_quantiles"])
        if len(mean) != 3 or len(inv) != 3 or any(len(r) != 3 for r in inv) or len(quantiles) < 2:
            raise ValueError("an input profile needs a 3-vector mean, a 3x3 inverse covariance and quantiles")
        if not all(math.isfinite(v) for v in (*mean, *quantiles, *(v for r in inv for v in r))):
            raise ValueError("an input profile holds a value that is not a finite number")
        return cls(mean, inv, quantiles)


def _mahalanobis(stats: np.ndarray, mean: np.ndarray, inv: np.ndarray) -> np.ndarray:
    centred = stats - mean
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", centred, inv, centred), 0.0))


# --- features of one prediction --------------------------------------------------------------
def prediction_features(prediction_z: np.ndarray, x: np.ndarray, profile: InputProfile | None,
                        variance_z: np.ndarray | None = None) -> tuple[dict[str, float], np.ndarray | None]:
    """Image-level features (see the module docstring) and the familiarity map (or None).

    ``prediction_z`` and ``variance_z`` are in z-score units of the training target (the
    network's own units), ``x`` is the normalized input the network saw.
    """
    feats = output_features(prediction_z, variance_z)
    stride = max(1, math.ceil(math.sqrt(np.size(prediction_z) / STATS_PIXELS)))
    xs = np.asarray(x, dtype=np.float32)
    feats["input_sd"] = float(np.nanstd(xs[..., ::stride, ::stride]))
    familiar = None if profile is None else profile.familiarity(np.nan_to_num(xs))
    return {**feats, **familiarity_features(familiar)}, familiar


def output_features(prediction_z: np.ndarray, variance_z: np.ndarray | None = None) -> dict[str, float]:
    """The prediction's own features (spread, mean, tail, separation; with a variance, how much of
    it the mean explains), from a strided sample of at most ``STATS_PIXELS``."""
    p = np.asarray(prediction_z, dtype=np.float32)
    stride = max(1, math.ceil(math.sqrt(p.size / STATS_PIXELS)))
    p = p[::stride, ::stride]  # the distribution's figures need no more pixels than this
    finite = p[np.isfinite(p)]
    if finite.size == 0:
        finite = np.zeros(1, np.float32)
    sd = float(finite.std())
    mean = float(finite.mean())
    # a calibrated network's mean is its z-scored target's, 0: far from it, it paints where there is nothing
    # ...and its r is its spread (z-scores): so spread minus mean, within 0-1, is what r would be if it were
    feats = {"pred_sd": sd, "pred_mean": mean, "abs_mean": abs(mean), "calibrated_r": min(1.0, max(0.0, sd - mean)),
             "pred_p99": float(np.percentile(finite, 99)), "pred_sep": 0.0}
    if sd > 1e-6:
        threshold = otsu_threshold(finite)
        fg = finite > threshold
        share = float(fg.mean())
        if 0.0 < share < 1.0:
            gap = float(finite[fg].mean() - finite[~fg].mean())
            feats["pred_sep"] = share * (1 - share) * gap * gap / (sd * sd)
    if variance_z is not None:
        spread = float(np.nanmean(np.asarray(variance_z, dtype=np.float32)[::stride, ::stride]))
        feats["explained_share"] = sd * sd / (sd * sd + spread) if sd * sd + spread > 0 else 0.0
        feats["explained_r"] = math.sqrt(feats["explained_share"])  # what r would be if the samples were calibrated
    return feats


def familiarity_features(familiar: np.ndarray | None) -> dict[str, float]:
    """The mean familiarity and the share of unfamiliar patches (none without a map)."""
    if familiar is None:
        return {}
    return {"familiar_mean": float(familiar.mean()), "unfamiliar_share": float((familiar < 0.02).mean())}


def mean_features(parts: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Features of several planes or time points: the mean of each feature they all have."""
    keys = set(parts[0]).intersection(*parts[1:]) if parts else set()
    return {k: float(np.mean([p[k] for p in parts])) for k in sorted(keys)}


def upsample_map(familiar: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A patch map (n_y, n_x) repeated to the plane's (Y, X) (the last patches take the rim)."""
    ny, nx = familiar.shape
    ys = np.minimum(np.arange(shape[0]) * ny // max(1, shape[0]), ny - 1)
    xs = np.minimum(np.arange(shape[1]) * nx // max(1, shape[1]), nx - 1)
    return familiar[np.ix_(ys, xs)].astype(np.float32)


# --- from features to an expected r --------------------------------------------------------
@dataclass(frozen=True)
class TrustEstimate:
    """The expected Pearson r of a prediction with a real stain, its interval, and what to say."""

    expected_r: float
    low: float
    high: float
    level: str
    reason: str
    advice: str
    method: str = METHOD
    features: dict[str, float] = field(default_factory=dict)

    @property
    def trustworthy(self) -> bool:
        return self.level != "not trustworthy"

    def summary(self) -> str:
        """One line: 'expected r 0.42 (0.30-0.55): not trustworthy'."""
        return f"expected r {self.expected_r:.2f} ({self.low:.2f}-{self.high:.2f}): {self.level}"

    def sentence(self) -> str:
        return f"{self.summary()[0].upper()}{self.summary()[1:]}. {self.reason} {self.advice}".strip()

    def to_dict(self) -> dict[str, Any]:
        return {"expected_r": round(self.expected_r, 4), "interval": [round(self.low, 4), round(self.high, 4)],
                "level": self.level, "reason": self.reason, "advice": self.advice, "method": self.method,
                "features": {k: round(v, 5) for k, v in self.features.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrustEstimate:
        low, high = data["interval"]
        return cls(float(data["expected_r"]), float(low), float(high), str(data["level"]), str(data["reason"]),
                   str(data["advice"]), str(data.get("method", METHOD)), dict(data.get("features") or {}))


@dataclass(frozen=True)
class TrustModel:
    """A ridge regression from standardized features to r, with interval half-widths."""

    features: tuple[str, ...]
    centre: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    below: float  # half-widths of the interval (quantiles of held-out residuals)
    above: float
    flag_below: float = TRUSTWORTHY_R  # expected r under this: not trustworthy
    fitted_on: str = ""

    def expected_r(self, feats: Mapping[str, float]) -> float:
        z = [(feats[n] - c) / s for n, c, s in zip(self.features, self.centre, self.scale)]
        return float(np.clip(self.intercept + float(np.dot(self.coef, z)), -0.2, 1.0))

    def estimate(self, feats: Mapping[str, float]) -> TrustEstimate:
        r = self.expected_r(feats)
        level = "good" if r >= max(GOOD_R, self.flag_below + 0.1) else (
            "uncertain" if r >= self.flag_below else "not trustworthy")
        reason, advice = explain(level, feats)
        used = {k: float(v) for k, v in feats.items()}
        return TrustEstimate(r, max(-1.0, r - self.below), min(1.0, r + self.above), level, reason, advice, METHOD,
                             used)

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "centre": list(self.centre), "scale": list(self.scale),
                "coef": list(self.coef), "intercept": self.intercept, "below": self.below, "above": self.above,
                "flag_below": self.flag_below, "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrustModel:
        names = tuple(str(n) for n in data["features"])
        vectors = [tuple(float(v) for v in data[k]) for k in ("centre", "scale", "coef")]
        if any(len(v) != len(names) for v in vectors) or any(s <= 0 for s in vectors[1]):
            raise ValueError("a trust model needs one centre, positive scale and coefficient per feature")
        return cls(names, *vectors, float(data["intercept"]), float(data["below"]), float(data["above"]),
                   float(data.get("flag_below", TRUSTWORTHY_R)), str(data.get("fitted_on", "")))

    @classmethod
    def fit(cls, rows: Sequence[Mapping[str, float]], actual: Sequence[float], features: Sequence[str],
            ridge: float = 1.0, coverage: float = 0.8, fitted_on: str = "") -> TrustModel:
        """Least squares with an L2 penalty on standardized ``features``; the interval covers
        ``coverage`` of the training residuals (``calibrate_trust.py`` widens it to held-out ones)."""
        X = np.array([[row[n] for n in features] for row in rows], dtype=np.float64)
        y = np.asarray(actual, dtype=np.float64)
        centre, scale = X.mean(axis=0), X.std(axis=0) + 1e-9
        Z = (X - centre) / scale
        coef = np.linalg.solve(Z.T @ Z + ridge * np.eye(len(features)), Z.T @ (y - y.mean()))
        residual = y - (y.mean() + Z @ coef)
        tail = (1 - coverage) / 2
        return cls(tuple(features), tuple(map(float, centre)), tuple(map(float, scale)), tuple(map(float, coef)),
                   float(y.mean()), float(max(0.02, -np.quantile(residual, tail))),
                   float(max(0.02, np.quantile(residual, 1 - tail))), TRUSTWORTHY_R, fitted_on)


# Leave-one-source-out, averaging the 8 looks raised r on all five sources (mean 0.549 -> 0.587).
TTA_ADVICE = (" Test-time augmentation (--tta; Run panel) averages 8 flipped and rotated looks, which raised r "
              "on every microscope the models had not seen.")


def explain(level: str, feats: Mapping[str, float]) -> tuple[str, str]:
    """One sentence why, one what to do."""
    if level == "good":
        return ("The image resembles the model's training data and the prediction is sharp.",
                "Check a stained field now and then.")
    reasons = []
    if feats.get("unfamiliar_share", 0.0) > 0.25:
        reasons.append(f"{feats['unfamiliar_share']:.0%} of the image looks unlike anything the model was trained on")
    if feats.get("pred_mean", 0.0) > 0.3:
        reasons.append("the prediction paints stain over much of the image (its mean is "
                       f"{feats['pred_mean']:+.2f} stain SD, where a faithful one averages 0)")
    if feats.get("pred_sd", 1.0) < 0.4:
        reasons.append(f"the prediction is faint and hazy (its spread is {feats['pred_sd']:.2f} of the stain's), "
                       "which is what the model does where it cannot tell")
    elif feats.get("pred_sep", 1.0) < 0.45:
        reasons.append("the prediction does not separate into clear structures and background")
    if "explained_share" in feats and feats["explained_share"] < 0.3:
        reasons.append("the samples disagree more than they agree")
    if not reasons and "explained_r" not in feats:
        reasons.append("on microscopes it was not trained on, U-Net predictions with this spread "
                       f"({feats.get('pred_sd', 0.0):.2f}) and mean ({feats.get('pred_mean', 0.0):+.2f}) often missed the "
                       "real stain; a diffusion model's samples would say more")
    why = ("Why: " + "; ".join(reasons) + ".") if reasons else "Why: images like this one were often predicted poorly."
    tta = "" if "explained_share" in feats else TTA_ADVICE  # a U-Net run without test-time augmentation
    if level == "uncertain":
        return why, "Use it with care, and compare with a stained field if the result matters." + tta
    return why, ("Do not use it as a stain: stain a few fields, fine-tune the model on them "
                 "(Improve for my images…, or labelfree train --init-from), and predict again." + tta)


# --- the bundled calibration -----------------------------------------------------------------
def load_calibration(path: Path) -> dict[str, TrustModel]:
    """Trust models by model kind ("unet", "diffusion") from a calibration file."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {kind: TrustModel.from_dict(entry) for kind, entry in data.get("models", {}).items()}


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of finite float ``values``, the same number as scikit-image's ``threshold_otsu``
    (256-bin histogram over the values' range, the centre of the bin that best splits them) without
    importing scikit-image and SciPy, which cost a prediction ~0.5 s (seconds on a loaded machine)."""
    flat = np.asarray(values).reshape(-1)
    if np.all(flat == flat[0]):
        return flat[0]
    counts, edges = np.histogram(flat, bins=bins, range=(flat.min(), flat.max()))
    centers = (edges[:-1] + edges[1:]) / 2.0
    weight1 = np.cumsum(counts)
    weight2 = np.cumsum(counts[::-1])[::-1]
    mean1 = np.cumsum(counts * centers) / weight1
    mean2 = (np.cumsum((counts * centers)[::-1]) / weight2[::-1])[::-1]
    variance12 = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    return centers[np.argmax(variance12)]
