"""A pair worth training on: every pixel a finite number, and a target that varies.

A NaN or infinite pixel makes every loss it touches NaN; a target with one value everywhere (all zero, a
blank or saturated channel) has no signal, so a network learns nothing from it. Both are refused when the
pair is read, before any training step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labelfree_app.errors import TrainingDataError


def check_signal(source: np.ndarray, target: np.ndarray, spec: Any) -> None:
    """Refuse a pair whose input or target holds NaN/Inf, or whose target is constant, in one sentence."""
    for array, role, name in ((source, "input", spec.describe_input()), (target, "target", str(spec.target))):
        if array.dtype.kind in "fc":
            bad = int(array.size - np.count_nonzero(np.isfinite(array)))
            if bad:
                raise TrainingDataError(
                    f"The {role} {name} holds {bad} pixel(s) that are not finite numbers (NaN or infinite), which "
                    "would make the training loss NaN; fix the image or leave the pair out.", path=name)
    low, high = (np.min(target), np.max(target)) if target.size else (0, 0)
    if low == high:
        what = "is all zero" if low == 0 else f"has the same value ({low:g}) everywhere"
        raise TrainingDataError(
            f"The target {spec.target} {what}, so there is nothing to learn from it; check that it is the right "
            "channel or file, or leave the pair out.", path=str(spec.target))
