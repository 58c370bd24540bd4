"""Random patches from a buffer of images (fnet's approach), never touching the validation region.

Every patch position ("corner") of an image gets a probability: zero where the patch would
overlap the validation region, otherwise a mix of uniform and foreground-weighted, where a
corner's foreground weight is the number of foreground target pixels inside its patch. Corners
are drawn by inverse-CDF from a cumulative table, so sampling costs O(log n) per patch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from labelfree_app.errors import TrainingDataError
from labelfree_app.training.augment import (augment_input, augment_pair, jitter_intensity, stretch_if_empty,
                                            zoom_window)
from labelfree_app.training.config import AugmentSettings
from labelfree_app.training.datasets import LoadedPair


@dataclass(frozen=True)
class Region:
    """A box in an image: half-open ``(start, stop)`` per spatial axis (Y, X) or (Z, Y, X)."""

    bounds: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, text: str) -> "Region":
        """Parse ``"y0:y1,x0:x1"`` (or ``"z0:z1,y0:y1,x0:x1"``); an empty side means the edge."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) not in (2, 3):
            raise TrainingDataError(
                f"The validation region '{text}' must look like y0:y1,x0:x1 (e.g. 512:1024,512:1024).")
        bounds = []
        for part in parts:
            ends = part.split(":")
            if len(ends) != 2:
                raise TrainingDataError(f"The validation region '{text}' must give start:stop for each axis.")
            try:
                start = int(ends[0]) if ends[0].strip() else 0
                stop = int(ends[1]) if ends[1].strip() else -1
            except ValueError:
                raise TrainingDataError(f"The validation region '{text}' must use whole numbers.") from None
            bounds.append((start, stop))
        return cls(tuple(bounds))

    def resolve(self, shape: Sequence[int], *, name: str = "the image") -> "Region":
        """Fit to an image of ``shape`` (spatial): fill missing Z, turn open ends into sizes, check."""
        bounds = list(self.bounds)
        if len(bounds) < len(shape):
            bounds = [(0, -1)] * (len(shape) - len(bounds)) + bounds
        if len(bounds) > len(shape):
            raise TrainingDataError(f"The validation region has {len(bounds)} axes but {name} has {len(shape)}.")
        resolved = []
        for (start, stop), size in zip(bounds, shape):
            stop = size if stop == -1 else stop
            if not 0 <= start < stop <= size:
                raise TrainingDataError(
                    f"The validation region {self} does not fit inside {name} "
                    f"({'×'.join(map(str, shape))} px); give a region within the image.")
            resolved.append((start, stop))
        return Region(tuple(resolved))

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in self.bounds)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(b - a for a, b in self.bounds)

    def __str__(self) -> str:
        return ",".join(f"{a}:{b}" for a, b in self.bounds)


MAX_TABLE_CORNERS = 4_000_000  # bounds the corner table (~32 MB) for very large images and stacks


def allowed_corners(
    spatial_shape: Sequence[int], patch_shape: Sequence[int], exclude: Region | None,
    cells: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Boolean map over patch corners: True where the patch stays clear of ``exclude``.

    With ``cells`` (the start of each cell of corners, per axis, as from ``corner_cells``) the
    map is over cells, and a cell is True only if every corner in it is clear.
    """
    counts = [size - p + 1 for size, p in zip(spatial_shape, patch_shape)]
    if min(counts) < 1:
        return np.zeros([max(c, 0) for c in counts], dtype=bool)
    cells = cells if cells is not None else [np.arange(n) for n in counts]
    if exclude is None:
        return np.ones([len(c) for c in cells], dtype=bool)
    overlaps = np.ones([len(c) for c in cells], dtype=bool)
    for axis, ((start, stop), p, n, starts) in enumerate(zip(exclude.bounds, patch_shape, counts, cells)):
        corner = np.arange(n)
        hits = (corner < stop) & (corner + p > start)
        shape = [1] * len(counts)
        shape[axis] = len(starts)
        overlaps &= np.logical_or.reduceat(hits, starts).reshape(shape)
    return ~overlaps


def corner_cells(counts: Sequence[int], max_corners: int = MAX_TABLE_CORNERS) -> list[np.ndarray]:
    """Starts of cells of patch corners per axis: every corner (stride 1) unless the image has
    more than ``max_corners``; then Y and X are grouped in s×s cells and a corner is drawn as a
    cell plus a uniform offset inside it."""
    stride = 1
    total = float(np.prod(counts))
    if total > max_corners:
        stride = int(np.ceil(np.sqrt(total / max_corners)))
    strides = [1] * (len(counts) - 2) + [stride, stride]
    return [np.arange(0, n, s) for n, s in zip(counts, strides)]


def foreground_mask(target: np.ndarray) -> np.ndarray:
    """Foreground of a target (*spatial): pixels above its Otsu threshold."""
    from skimage.filters import threshold_otsu

    if float(target.max()) <= float(target.min()):
        return np.zeros(target.shape, dtype=bool)
    return target > threshold_otsu(target)


def patch_sums(mask: np.ndarray, patch_shape: Sequence[int],
               corners: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Number of True pixels in the patch at every corner (or at the grid ``corners`` per axis),
    from an integral image by inclusion-exclusion over the 2^ndim corners of each box."""
    integral = mask.astype(np.int32 if mask.size < 2**31 else np.int64)
    for axis in range(mask.ndim):
        integral = np.cumsum(integral, axis=axis, dtype=integral.dtype)
        pad = [(0, 0)] * mask.ndim
        pad[axis] = (1, 0)
        integral = np.pad(integral, pad)
    if corners is None:
        corners = [np.arange(s - p + 1) for s, p in zip(mask.shape, patch_shape)]
    result = np.zeros([len(c) for c in corners], dtype=np.int64)
    for offsets in np.ndindex(*([2] * mask.ndim)):
        sign = (-1) ** (mask.ndim - sum(offsets))
        index = np.ix_(*[c + (p if o else 0) for c, p, o in zip(corners, patch_shape, offsets)])
        result += sign * integral[index]
    return result


class CornerTable:
    """Cumulative probabilities of patch corners (or cells of corners) in one image."""

    def __init__(self, pair: LoadedPair, patch_shape: Sequence[int], exclude: Region | None,
                 foreground_weight: float, max_corners: int = MAX_TABLE_CORNERS) -> None:
        self.counts = [size - p + 1 for size, p in zip(pair.spatial_shape, patch_shape)]
        size = "×".join(map(str, patch_shape))
        if min(self.counts) < 1:
            raise TrainingDataError(
                f"The training image {pair.name} is smaller than the patch ({size} px); use a smaller patch.",
                path=pair.spec.target)
        self.cells = corner_cells(self.counts, max_corners)
        allowed = allowed_corners(pair.spatial_shape, patch_shape, exclude, self.cells)
        if not allowed.any():
            raise TrainingDataError(
                f"The training image {pair.name} has no room outside the validation region for a patch "
                f"({size} px); use a smaller patch or region.", path=pair.spec.target)
        self.grid_shape = allowed.shape
        weights = allowed.astype(np.float64) / allowed.sum()
        if foreground_weight > 0:
            fg = patch_sums(foreground_mask(pair.target[0]), patch_shape, self.cells).astype(np.float64) * allowed
            if fg.sum() > 0:
                weights = (1 - foreground_weight) * weights + foreground_weight * fg / fg.sum()
        self.cdf = np.cumsum(weights.ravel())
        self.cdf /= self.cdf[-1]

    def draw(self, rng: np.random.Generator) -> tuple[int, ...]:
        flat = int(np.searchsorted(self.cdf, rng.random(), side="right"))
        # Disallowed cells add zero to the CDF, so searchsorted(side="right") never lands on one.
        flat = min(flat, self.cdf.size - 1)
        corner = []
        for axis, cell in enumerate(np.unravel_index(flat, self.grid_shape)):
            starts = self.cells[axis]
            start = int(starts[cell])
            end = int(starts[cell + 1]) if cell + 1 < len(starts) else self.counts[axis]
            corner.append(start + (int(rng.integers(end - start)) if end - start > 1 else 0))
        return tuple(corner)


class PatchSampler:
    """Batches of (input, target) patches from a buffer of loaded pairs.

    With more pairs than ``buffer_size``, one buffered image is swapped for an unbuffered one
    every ``switch_every`` batches (fnet). ``state()`` / ``restore()`` make resuming exact.
    """

    def __init__(
        self,
        load: Callable[[int], LoadedPair],
        n_pairs: int,
        patch_shape: Sequence[int],
        *,
        exclude: Region | None = None,
        foreground_weight: float = 0.0,
        buffer_size: int = 16,
        switch_every: int = 2000,
        augment: bool = True,
        intensity_jitter: float = 0.0,
        augmentation: AugmentSettings | None = None,
        weights: Sequence[float] | None = None,
        rng: np.random.Generator,
    ) -> None:
        self._load = load
        self.n_pairs = n_pairs
        self.patch_shape = tuple(patch_shape)
        self.exclude = exclude
        self.foreground_weight = float(foreground_weight)
        self.switch_every = max(1, switch_every)
        self.augment = augment
        self.intensity_jitter = float(intensity_jitter)
        self.augmentation = augmentation or AugmentSettings()
        self.weights = np.asarray(weights if weights is not None else np.ones(n_pairs), dtype=np.float64)
        if self.weights.shape != (n_pairs,) or (self.weights < 0).any() or not self.weights.sum() > 0:
            raise TrainingDataError("Pair weights must be one non-negative number per pair, not all zero.")
        self.rng = rng
        self.buffer: list[int] = list(range(min(buffer_size, n_pairs)))
        self.batches_since_switch = 0
        self._cache: dict[int, tuple[LoadedPair, CornerTable, tuple[int, ...]]] = {}

    def state(self) -> dict[str, Any]:
        return {"buffer": list(self.buffer), "batches_since_switch": self.batches_since_switch}

    def restore(self, state: dict[str, Any]) -> None:
        self.buffer = [int(i) for i in state["buffer"]]
        self.batches_since_switch = int(state["batches_since_switch"])

    def entry(self, index: int) -> tuple[LoadedPair, CornerTable, tuple[int, ...]]:
        """A buffered pair, its corner table and its window (the patch, enlarged for zooming out)."""
        if index not in self._cache:
            pair = self._load(index)
            exclude = self.exclude.resolve(pair.spatial_shape, name=pair.name) if self.exclude else None
            window = self._window(pair.spatial_shape)
            try:
                table = CornerTable(pair, window, exclude, self.foreground_weight)
            except TrainingDataError:
                if window == self.patch_shape:
                    raise
                window = self.patch_shape  # too small to zoom out: patches at the native scale only
                table = CornerTable(pair, window, exclude, self.foreground_weight)
            self._cache[index] = (pair, table, window)
        return self._cache[index]

    def _window(self, spatial_shape: Sequence[int]) -> tuple[int, ...]:
        grow = self.augmentation.max_scale
        if grow <= 1.0:
            return self.patch_shape
        lead = len(self.patch_shape) - 2  # Z (3D) is never zoomed
        yx = [min(int(np.ceil(p * grow)), size) for p, size in zip(self.patch_shape[lead:], spatial_shape[lead:])]
        return (*self.patch_shape[:lead], *yx)

    def _crop(self, pair: LoadedPair, corner: tuple[int, ...], window: tuple[int, ...]
              ) -> tuple[np.ndarray, np.ndarray]:
        """The patch at ``corner``: a random zoom (scale augmentation) inside the window, resized."""
        lead = len(self.patch_shape) - 2
        span = self.augmentation.scale_known if pair.scale_known else self.augmentation.scale
        size = list(self.patch_shape)
        if span is not None and window != self.patch_shape:
            zoom = float(np.exp(self.rng.uniform(np.log(span[0]), np.log(span[1]))))
            for axis in range(lead, len(size)):
                size[axis] = max(8, min(window[axis], int(round(self.patch_shape[axis] * zoom))))
        start = [c + int(self.rng.integers(w - s + 1)) for c, w, s in zip(corner, window, size)]
        box = (slice(None),) + tuple(slice(a, a + s) for a, s in zip(start, size))
        x, y = pair.input[box], pair.target[box]
        if tuple(size) != self.patch_shape:
            x, y = zoom_window(x, self.patch_shape[lead:]), zoom_window(y, self.patch_shape[lead:])
        return x, y

    def sample(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """A batch: inputs (B, C_in, *patch), targets (B, 1, *patch), float32."""
        self._maybe_switch()
        inputs, targets = [], []
        weights = self.weights[self.buffer]
        cdf = np.cumsum(weights) / weights.sum()
        for _ in range(batch_size):
            pick = min(int(np.searchsorted(cdf, self.rng.random(), side="right")), len(self.buffer) - 1)
            pair, table, window = self.entry(self.buffer[pick])
            x, y = self._crop(pair, table.draw(self.rng), window)
            if self.augment:
                x, y = augment_pair(x, y, self.rng)
            if self.intensity_jitter > 0:
                x = jitter_intensity(x, self.rng, self.intensity_jitter)
            x = stretch_if_empty(x, y, self.rng, self.augmentation.empty_stretch)
            x = augment_input(x, self.rng, self.augmentation)
            inputs.append(x)
            targets.append(y)
        self.batches_since_switch += 1
        return np.stack(inputs).astype(np.float32), np.stack(targets).astype(np.float32)

    def _maybe_switch(self) -> None:
        if self.batches_since_switch < self.switch_every or len(self.buffer) >= self.n_pairs:
            return
        self.batches_since_switch = 0
        outside = [i for i in range(self.n_pairs) if i not in self.buffer]
        dropped = self.buffer.pop(0)
        self._cache.pop(dropped, None)
        self.buffer.append(outside[int(self.rng.integers(len(outside)))])
