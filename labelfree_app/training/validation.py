"""Validation during training: held-out crops, and Pearson r (plus calibration for diffusion).

Validation images are the validation region of every training image (predicted with a margin
of surrounding input as context, then cropped; the targets there are never trained on) and any
separate validation pairs. ``val_r`` is the mean over validation images of Pearson r.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from labelfree_app.training.calibration import uncertainty_calibration
from labelfree_app.training.datasets import LoadedPair
from labelfree_app.training.sampling import Region

CONTEXT = 32  # px of input around a validation region given to the network as context


@dataclass(frozen=True)
class ValItem:
    """One validation image: the network input with context, and where the target sits in it."""

    name: str
    input: np.ndarray  # (C, *spatial) including context
    target: np.ndarray  # (1, *spatial_of_region)
    inner: tuple[slice, ...]  # spatial slices of the region inside ``input``


@dataclass(frozen=True)
class ValPreview:
    """The first validation image at one validation: input, target and prediction, (*spatial) each."""

    name: str
    input: np.ndarray
    target: np.ndarray
    prediction: np.ndarray


def validation_items(
    train_pairs: Sequence[LoadedPair],
    region: Region | None,
    val_pairs: Sequence[LoadedPair],
    *,
    max_shape: Sequence[int] | None = None,
) -> list[ValItem]:
    """The validation region of each training pair, then each validation pair (whole image).

    ``max_shape`` caps the validated area (a centred crop) to bound the cost of diffusion sampling.
    """
    items = []
    if region is not None:
        for pair in train_pairs:
            box = _cap(region.resolve(pair.spatial_shape, name=pair.name), max_shape)
            items.append(_item(pair, box, name=f"{pair.name} [{box}]"))
    for pair in val_pairs:
        box = _cap(Region(tuple((0, s) for s in pair.spatial_shape)), max_shape)
        items.append(_item(pair, box, name=pair.name))
    return items


def run_validation(
    objective: Any, network: nn.Module, items: Sequence[ValItem], device: torch.device, *, seed: int,
    with_preview: bool = False,
) -> dict[str, Any]:
    """``{"val_r": mean Pearson r, "per_image": [...], ...calibration means for diffusion}``.

    ``with_preview`` adds ``"preview"``: a ``ValPreview`` of the first item (not JSON; pop it).
    """
    from labelfree_app.core.metrics import pearson_r

    was_training = network.training
    network.eval()
    rs, calibrations = [], []
    preview: ValPreview | None = None
    try:
        for item in items:
            mean, variance = objective.predict(network, item.input, device, seed)
            inner = (slice(None),) + item.inner
            mean = mean[inner]
            if with_preview and preview is None:
                preview = ValPreview(item.name, np.array(item.input[inner][0]), np.array(item.target[0]),
                                     np.array(mean[0]))
            rs.append(float(pearson_r(mean, item.target)))
            if variance is not None:
                calibrations.append(uncertainty_calibration(mean, variance[inner], item.target))
    finally:
        network.train(was_training)
    finite = [r for r in rs if math.isfinite(r)]
    result: dict[str, Any] = {
        "val_r": float(np.mean(finite)) if finite else math.nan,
        "per_image": [{"name": item.name, "pearson_r": r} for item, r in zip(items, rs)],
    }
    if preview is not None:
        result["preview"] = preview
    if calibrations:
        for key in ("within_1sigma", "within_2sigma", "std_error_spearman"):
            values = [getattr(c, key) for c in calibrations if math.isfinite(getattr(c, key))]
            result[key] = float(np.mean(values)) if values else math.nan
    return result


def _cap(box: Region, max_shape: Sequence[int] | None) -> Region:
    if not max_shape:
        return box
    limits = list(max_shape)
    limits = [None] * (len(box.bounds) - len(limits)) + limits  # a 2D cap leaves Z whole
    bounds = []
    for (start, stop), limit in zip(box.bounds, limits):
        if limit is not None and stop - start > limit:
            start = start + (stop - start - limit) // 2
            stop = start + limit
        bounds.append((start, stop))
    return Region(tuple(bounds))


def _item(pair: LoadedPair, box: Region, *, name: str) -> ValItem:
    outer, inner = [], []
    for axis, ((start, stop), size) in enumerate(zip(box.bounds, pair.spatial_shape)):
        margin = CONTEXT if axis >= len(box.bounds) - 2 else 0  # context in Y and X only
        lo, hi = max(0, start - margin), min(size, stop + margin)
        outer.append(slice(lo, hi))
        inner.append(slice(start - lo, stop - lo))
    return ValItem(
        name=name,
        input=np.ascontiguousarray(pair.input[(slice(None), *outer)]),
        target=np.ascontiguousarray(pair.target[(slice(None), *box.slices)]),
        inner=tuple(inner),
    )
