"""The stain's intensity units a model can map its predictions back to.

The network learns per-image z-scores of the target (so brightness differences between fields do not
confuse it). To write predictions that look and measure like the stain, training records the median
over its target images of each image's mean and standard deviation; prediction maps z-scores back
with them (``x = z · std + mean``). This assumes the new image's stain has the training images'
typical brightness and contrast, which holds for the same microscope, stain protocol and exposure.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from labelfree_app.models.manifest import OUTPUT_DTYPES
from labelfree_app.training.config import PairSpec

RULE = "median over the training targets of each image's mean and standard deviation (finite pixels)"


def target_units(pairs: Sequence[PairSpec]) -> dict[str, Any]:
    """``{"mean", "std", "dtype", "images", "rule"}`` of the training targets (``dtype``: the common
    integer pixel type of the targets, else float32)."""
    from labelfree_app.training.datasets import read_target_raw

    means, stds, dtypes = [], [], set()
    for spec in dict.fromkeys(pairs):  # a pair listed twice (weighted) counts once
        raw = read_target_raw(spec)
        values = raw.astype(np.float64, copy=False)
        finite = values[np.isfinite(values)]
        if finite.size < 2:
            continue
        means.append(float(finite.mean()))
        stds.append(float(finite.std()))
        dtypes.add(str(raw.dtype))
    dtype = dtypes.pop() if len(dtypes) == 1 and next(iter(dtypes)) in OUTPUT_DTYPES else "float32"
    return {"mean": float(np.median(means)), "std": float(max(np.median(stds), 1e-12)), "dtype": dtype,
            "images": len(means), "rule": RULE}
