"""Read and check training pairs before training, with small previews to confirm registration.

The app's Train page calls ``check_pairs`` on a worker thread as soon as pairs are named: a pair
whose file is missing, whose input and target differ in size, or whose channel does not exist is
refused with the reader's one sentence, before any training starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from labelfree_app.errors import LabelFreeError, TrainingDataError
from labelfree_app.training.config import PairSpec
from labelfree_app.training.datasets import check_pairs_exist, read_input_image, read_pair_zyx

THUMBNAIL_SIDE = 256
PREVIEW_PAIRS = 3


@dataclass(frozen=True)
class CheckedPair:
    """One readable, same-size pair: its (Z, Y, X) shape and, for the first few, 2D thumbnails."""

    spec: PairSpec
    input_shape: tuple[int, ...]
    target_shape: tuple[int, ...]
    input_thumb: np.ndarray | None = None
    target_thumb: np.ndarray | None = None

    @property
    def yx(self) -> tuple[int, int]:
        return int(self.target_shape[-2]), int(self.target_shape[-1])

    def describe_size(self) -> str:
        planes = f", {self.input_shape[0]} planes" if self.input_shape[0] > 1 else ""
        return f"{self.yx[0]}×{self.yx[1]} px{planes}"


def thumbnail(volume: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """The middle plane of a (Z, Y, X) volume, strided down to at most ``side`` px (float32)."""
    plane = np.asarray(volume[volume.shape[0] // 2] if volume.ndim == 3 else volume, dtype=np.float32)
    step = max(1, int(np.ceil(max(plane.shape) / side)))
    return np.ascontiguousarray(plane[::step, ::step])


def check_pair(spec: PairSpec, *, with_thumbnails: bool = True) -> CheckedPair:
    """Read one pair; raises ``TrainingDataError`` with one sentence if it cannot be trained on."""
    source, target = read_pair_zyx(spec)
    if target.shape[0] != 1:
        raise TrainingDataError(
            f"The target {Path(spec.target).name} is a {target.shape[0]}-plane stack but the app trains 2D "
            "models; give a single-plane (e.g. max-projected) target, or use 'labelfree train --dims 3'.",
            path=spec.target)
    return CheckedPair(spec, tuple(source.shape), tuple(target.shape),
                       thumbnail(source) if with_thumbnails else None,
                       thumbnail(target) if with_thumbnails else None)


def check_pairs(pairs: Sequence[PairSpec], *, previews: int = PREVIEW_PAIRS) -> list[CheckedPair]:
    """Check every pair (files exist, readable, input and target the same Y×X); thumbnails of the first few."""
    check_pairs_exist(pairs)
    checked = [check_pair(spec, with_thumbnails=index < previews) for index, spec in enumerate(pairs)]
    planes = {c.input_shape[0] for c in checked}
    if len(planes) > 1:
        odd = next(c for c in checked if c.input_shape[0] != checked[0].input_shape[0])
        raise TrainingDataError(
            f"The input {Path(str(odd.spec.input)).name} has {odd.input_shape[0]} planes but "
            f"{Path(str(checked[0].spec.input)).name} has {checked[0].input_shape[0]}; all inputs must match.",
            path=odd.spec.target)
    return checked


def channel_names(path: str | Path) -> list[str]:
    """The channel names of an image file (to pick the input and target of multi-channel files)."""
    try:
        image = read_input_image(PairSpec(str(path), str(path)))
    except LabelFreeError as exc:
        raise TrainingDataError(str(exc), path=exc.path or path) from exc
    names = list(getattr(image, "channel_names", ()) or ())
    count = int(np.asarray(image.data).shape[-4])
    return names if len(names) == count else [f"channel {k}" for k in range(count)]
