"""How close a prediction is to the observed image: Pearson r, NRMSE, SSIM, masks, differences; and
a prediction scored against a fluorescence channel of its own input (``pearson_of_prediction`` in
memory, ``pearson_of_file`` for a written, streamed one), None and a note when it cannot be compared."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from labelfree_app.errors import LabelFreeError

_SSIM_WINDOW = 7  # scikit-image's default window side


def pearson_r(a: Any, b: Any, mask: Any = None) -> float:
    """Pearson correlation of two same-shaped images (float64), over ``mask`` if given.

    NaN when either image is constant (over the mask) or the mask selects fewer than 2 pixels."""
    x, y = _same_shape(a, b)
    if mask is not None:
        selection = np.asarray(mask, dtype=bool)
        if selection.shape != x.shape:
            raise ValueError(f"mask shape {selection.shape} differs from image shape {x.shape}")
        x, y = x[selection], y[selection]
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.size < 2:
        return math.nan
    x = x - x.mean()
    y = y - y.mean()
    denominator = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    if denominator == 0.0:
        return math.nan
    return float(np.dot(x, y) / denominator)


def nrmse(pred: Any, target: Any, normalization: str = "min-max") -> float:
    """Root-mean-square error divided by the target's range ("min-max"), its mean ("mean") or
    its root-mean-square ("euclidean"), via scikit-image. 0 for a perfect prediction; inf when
    the divisor is 0 and the prediction is not perfect."""
    p, t = _same_shape(pred, target)
    p, t = np.asarray(p, dtype=np.float64), np.asarray(t, dtype=np.float64)
    divisor = {"min-max": lambda: t.max() - t.min(), "mean": lambda: t.mean(),
               "euclidean": lambda: math.sqrt(float(np.mean(t * t)))}.get(normalization)
    if divisor is None:
        raise ValueError(f"unknown normalization {normalization!r}; use 'min-max', 'mean' or 'euclidean'")
    if divisor() == 0:
        return 0.0 if np.array_equal(p, t) else math.inf
    from skimage.metrics import normalized_root_mse  # scikit-image and SciPy cost a predict seconds to import

    return float(normalized_root_mse(t, p, normalization=normalization))


def ssim(pred: Any, target: Any, *, data_range: float | None = None) -> float:
    """Structural similarity (scikit-image) of two same-shaped 2D or 3D images.

    ``data_range`` defaults to the target's max - min (1.0 for a constant target). Singleton axes
    are dropped and the window shrinks (odd, >= 3) for thin images such as short z-stacks."""
    p, t = _same_shape(pred, target)
    p = np.squeeze(np.asarray(p, dtype=np.float64))
    t = np.squeeze(np.asarray(t, dtype=np.float64))
    if t.ndim < 2 or min(t.shape) < 3:
        raise ValueError(f"SSIM needs images at least 3 pixels along every axis, got shape {t.shape}")
    if data_range is None:
        data_range = float(t.max() - t.min()) or 1.0
    window = min(_SSIM_WINDOW, min(t.shape))
    window -= 1 - window % 2
    from skimage.metrics import structural_similarity

    return float(structural_similarity(t, p, data_range=data_range, win_size=window))


def otsu_mask(image: Any) -> np.ndarray:
    """Boolean foreground mask: pixels brighter than the Otsu threshold of the finite pixels."""
    data = np.asarray(image)
    finite = data[np.isfinite(data)] if np.issubdtype(data.dtype, np.floating) else data
    if finite.size == 0:
        return np.zeros(data.shape, dtype=bool)
    from skimage.filters import threshold_otsu

    threshold = threshold_otsu(finite)
    with np.errstate(invalid="ignore"):
        return data > threshold


def difference_maps(observed: Any, predicted: Any) -> dict[str, np.ndarray]:
    """Signed and absolute differences (float32): ``observed_minus_predicted`` (> 0 where the
    prediction misses signal), ``predicted_minus_observed`` (> 0 where it adds signal) and
    ``absolute``."""
    o, p = _same_shape(observed, predicted)
    observed_minus_predicted = np.subtract(o, p, dtype=np.float32)
    return {
        "observed_minus_predicted": observed_minus_predicted,
        "predicted_minus_observed": np.negative(observed_minus_predicted),
        "absolute": np.abs(observed_minus_predicted),
    }


def _same_shape(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} and {y.shape}")
    return x, y


# --- a prediction against a fluorescence channel of its input (the batch report's pearson_r) ---
def target_channel(image: Any, target: int | str) -> Any:
    """The channel to score against, found by index, name or a name part (``io.channels.find_target_channel``:
    "DAPI" finds "DNA (DAPI, real stain)", as Compare does)."""
    from labelfree_app.io.channels import find_target_channel

    return image.channel(find_target_channel(image.channel_names, target, path=image.path))


def pearson_of_prediction(image: Any, target: int | str, prediction: np.ndarray) -> tuple[float | None, str]:
    """Pearson r of a prediction in memory (channel 0) and the target channel (max-projected when the
    prediction is one plane of a stack)."""
    from labelfree_app.core.metrics import pearson_r

    try:
        observed = np.asarray(target_channel(image, target), dtype=np.float32)
    except LabelFreeError as exc:
        return None, f"no Pearson r: {exc}"
    predicted = prediction[:, 0] if prediction.ndim == 5 else prediction[0]  # (T,) Z, Y, X
    if observed.shape != predicted.shape and predicted.shape[-3] == 1:
        observed = observed.max(axis=-3, keepdims=True)
    if observed.shape != predicted.shape:
        return None, f"no Pearson r: the target channel is {observed.shape}, the prediction {predicted.shape}"
    return pearson_r(predicted, observed, mask=np.isfinite(predicted) & np.isfinite(observed)), ""


def pearson_of_file(image: Any, target: int | str, prediction_path: Path) -> tuple[float | None, str]:
    """Pearson r of a written prediction (channel 0) and the target channel, read band by band."""
    from labelfree_app.io import read_image

    try:
        observed = target_channel(image, target)
    except LabelFreeError as exc:
        return None, f"no Pearson r: {exc}"
    data = read_image(prediction_path, lazy=True).data
    predicted = data[:, 0] if data.ndim == 5 else data[0]
    if tuple(observed.shape) != tuple(predicted.shape):
        return None, (f"no Pearson r: the target channel is {tuple(observed.shape)}, the prediction "
                      f"{tuple(predicted.shape)}")
    sums = np.zeros(6)  # n, x, y, xx, yy, xy around a shift
    shift: tuple[float, float] | None = None
    height = observed.shape[-2]
    for lo in range(0, height, 512):
        x = np.asarray(predicted[..., lo:lo + 512, :], dtype=np.float64)
        y = np.asarray(observed[..., lo:lo + 512, :], dtype=np.float64)
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep], y[keep]
        if not x.size:
            continue
        if shift is None:
            shift = (float(x.mean()), float(y.mean()))
        x, y = x - shift[0], y - shift[1]
        sums += (x.size, x.sum(), y.sum(), np.dot(x, x), np.dot(y, y), np.dot(x, y))
    n = sums[0]
    if n < 2:
        return math.nan, ""
    vx, vy = sums[3] - sums[1] ** 2 / n, sums[4] - sums[2] ** 2 / n
    if vx <= 0 or vy <= 0:
        return math.nan, ""
    return float((sums[5] - sums[1] * sums[2] / n) / math.sqrt(vx * vy)), ""
