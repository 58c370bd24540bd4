"""Score a prediction against a fluorescence channel of its input: Pearson r (the batch report's column).

``pearson_of_prediction`` scores a prediction held in memory, ``pearson_of_file`` a written one read
band by band (a streamed job); either gives None and a note when the channel cannot be compared.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from labelfree_app.errors import LabelFreeError


def pearson_of_prediction(image: Any, target: int | str, prediction: np.ndarray) -> tuple[float | None, str]:
    """Pearson r of a prediction in memory (channel 0) and the target channel (max-projected when the
    prediction is one plane of a stack)."""
    from labelfree_app.core.metrics import pearson_r

    try:
        observed = np.asarray(image.channel(target), dtype=np.float32)
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
        observed = image.channel(target)
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
