"""Tiled prediction with smooth blending: any image size, bounded memory, no seams.

Along each spatial axis the image is reflect-padded by ``margin`` pixels of context (plus a few
pixels so the tiles fit exactly), then cut into tiles of ``tile_shape`` (a multiple of what the
network needs) whose starts step by a stride that is also such a multiple. Neighbouring tiles
share ``overlap`` pixels or a little more. Inside a shared band a tile's weight is 0 over the
outer ``margin`` pixels (where a network with zero padding is wrong), then rises along a
raised-cosine ramp to 1; the two ramps of neighbours add up to 1. Sides that touch the image
edge keep weight 1. Outputs are accumulated as ``sum(w * y) / sum(w)``; since the weights are
separable and the tiles form a full grid, ``sum(w)`` is a product of 1-D sums, so the only big
buffer is the output itself. A network whose receptive-field radius is at most ``margin``
(default ``overlap // 4``) therefore gives exactly the untiled result on the reflect-padded image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Generator, Iterator, Sequence

import numpy as np

from labelfree_app.core.drive import drive
from labelfree_app.errors import ModelError

Predict = Callable[[np.ndarray], Any]


@dataclass(frozen=True)
class Tile:
    """One tile: where it is read from and where its output goes."""

    index: int
    position: tuple[int, ...]  # grid index along each spatial axis
    source: tuple[slice, ...]  # the region fed to the network, in padded-image coordinates
    crop: tuple[slice, ...]  # the part of the tile output that lies inside the image
    destination: tuple[slice, ...]  # where that part goes, in image coordinates
    neighbours: tuple[tuple[bool, bool], ...]  # (has a tile before, has a tile after) per axis


@dataclass(frozen=True)
class TileGrid:
    """A grid of equal tiles covering a (virtually) padded image; see the module docstring."""

    spatial_shape: tuple[int, ...]
    tile_shape: tuple[int, ...]
    overlap: tuple[int, ...]  # pixels shared by neighbours (>= requested); 0 on single-tile axes
    margin: tuple[int, ...]  # zero-weight context at each shared tile side
    stride: tuple[int, ...]
    counts: tuple[int, ...]  # tiles along each axis
    pad_before: tuple[int, ...]
    pad_after: tuple[int, ...]

    @classmethod
    def create(
        cls,
        spatial_shape: Sequence[int],
        tile_shape: int | Sequence[int],
        overlap: int | Sequence[int],
        *,
        multiple_of: int | Sequence[int] = 1,
        margin: int | Sequence[int] | None = None,
    ) -> TileGrid:
        """Lay out tiles for an image of ``spatial_shape``.

        Tiles are rounded up to ``multiple_of`` and shrink to the padded image when it is smaller.
        A tile too small for ``overlap`` gets the overlap cut to about half the tile; ``margin``
        (default ``overlap // 4``) is capped at half the overlap.
        """
        shape = tuple(int(n) for n in spatial_shape)
        ndim = len(shape)
        if ndim == 0 or min(shape) < 1:
            raise ValueError(f"cannot tile an image of spatial shape {shape}")
        tiles = _per_axis(tile_shape, ndim, "tile_shape")
        overlaps = _per_axis(overlap, ndim, "overlap", minimum=0)
        multiples = _per_axis(multiple_of, ndim, "multiple_of")
        margins = [None] * ndim if margin is None else _per_axis(margin, ndim, "margin", minimum=0)
        layouts = [_layout_1d(*args) for args in zip(shape, tiles, overlaps, multiples, margins)]
        return cls(shape, *(tuple(column) for column in zip(*layouts)))

    @property
    def padded_shape(self) -> tuple[int, ...]:
        return tuple(b + n + a for b, n, a in zip(self.pad_before, self.spatial_shape, self.pad_after))

    @property
    def n_tiles(self) -> int:
        return math.prod(self.counts)

    def __len__(self) -> int:
        return self.n_tiles

    def __iter__(self) -> Iterator[Tile]:
        for index, position in enumerate(np.ndindex(*self.counts)):
            yield self._tile(index, tuple(int(p) for p in position))

    def _tile(self, index: int, position: tuple[int, ...]) -> Tile:
        source, crop, destination, neighbours = [], [], [], []
        for i, t, s, n, b, c in zip(position, self.tile_shape, self.stride, self.spatial_shape,
                                    self.pad_before, self.counts):
            start = i * s
            source.append(slice(start, start + t))
            lo, hi = max(start, b), min(start + t, b + n)
            crop.append(slice(lo - start, hi - start))
            destination.append(slice(lo - b, hi - b))
            neighbours.append((i > 0, i < c - 1))
        return Tile(index, position, tuple(source), tuple(crop), tuple(destination), tuple(neighbours))

    def extract(self, image: np.ndarray, tile: Tile) -> np.ndarray:
        """The (C, *tile_shape) input of ``tile`` from a (C, *spatial) image, reflecting at edges."""
        inside = all(sl.start >= b and sl.stop <= b + n
                     for sl, b, n in zip(tile.source, self.pad_before, self.spatial_shape))
        if inside:
            return image[(slice(None),) + tuple(slice(sl.start - b, sl.stop - b)
                                                 for sl, b in zip(tile.source, self.pad_before))]
        indices = [_reflect_indices(np.arange(sl.start, sl.stop) - b, n)
                   for sl, b, n in zip(tile.source, self.pad_before, self.spatial_shape)]
        return image[(slice(None),) + np.ix_(*indices)]

    def weights(self, tile: Tile) -> np.ndarray:
        """Blend weights (float32, ``tile_shape``) of ``tile``."""
        return _outer([self._profile(d, tile.neighbours[d]) for d in range(len(self.tile_shape))])

    def weight_sums(self) -> tuple[np.ndarray, ...]:
        """Per axis, the summed 1-D weights over image coordinates (all positive)."""
        sums = []
        for d, (t, s, c, b, n) in enumerate(zip(self.tile_shape, self.stride, self.counts,
                                                self.pad_before, self.spatial_shape)):
            total = np.zeros(self.padded_shape[d], dtype=np.float64)
            for i in range(c):
                total[i * s:i * s + t] += self._profile(d, (i > 0, i < c - 1))
            sums.append(total[b:b + n])
        return tuple(sums)

    def _profile(self, axis: int, neighbours: tuple[bool, bool]) -> np.ndarray:
        return _profile_1d(self.tile_shape[axis], self.overlap[axis], self.margin[axis], *neighbours)


def blend_weights(
    tile_shape: Sequence[int],
    overlap: int | Sequence[int],
    *,
    margin: int | Sequence[int] | None = None,
    neighbours: Sequence[tuple[bool, bool]] | None = None,
) -> np.ndarray:
    """Separable blend weights (float32) of a tile with neighbours on the given sides.

    Per axis: 0 over the outer ``margin`` pixels (default ``overlap // 4``) of a side with a
    neighbour, a raised-cosine ramp over the rest of the ``overlap`` band, 1 elsewhere; ramps of
    neighbours sharing exactly ``overlap`` pixels add up to 1. Default: neighbours on every side.
    """
    shape = tuple(int(t) for t in tile_shape)
    ndim = len(shape)
    overlaps = _per_axis(overlap, ndim, "overlap", minimum=0)
    margins = [o // 4 for o in overlaps] if margin is None else _per_axis(margin, ndim, "margin", minimum=0)
    sides = [(True, True)] * ndim if neighbours is None else [tuple(map(bool, n)) for n in neighbours]
    for t, o, m in zip(shape, overlaps, margins):
        if o > t or 2 * m > o:
            raise ValueError(f"need 2 * margin <= overlap <= tile, got margin {m}, overlap {o}, tile {t}")
    return _outer([_profile_1d(t, o, m, *n) for t, o, m, n in zip(shape, overlaps, margins, sides)])


def iter_predict_tiled(
    image: np.ndarray,
    predict: Predict,
    *,
    tile_shape: int | Sequence[int],
    overlap: int | Sequence[int],
    multiple_of: int | Sequence[int] = 1,
    batch_size: int = 1,
    out_channels: int | None = None,
    margin: int | Sequence[int] | None = None,
) -> Generator[tuple[int, int], None, np.ndarray]:
    """Like ``predict_tiled`` but a generator: yields (tiles done, total) after each batch and
    returns the (C_out, *spatial) float32 result (``result = yield from ...``, or ``core.drive.drive``)."""
    if image.ndim < 2:
        raise ValueError(f"expected a (C, *spatial) image, got shape {image.shape}")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    spatial = image.shape[1:]
    grid = TileGrid.create(spatial, tile_shape, overlap, multiple_of=multiple_of, margin=margin)
    total = grid.n_tiles
    output: np.ndarray | None = None
    if out_channels is not None:
        output = np.zeros((out_channels, *spatial), dtype=np.float32)
    weight_cache: dict[tuple[tuple[bool, bool], ...], np.ndarray] = {}
    done = 0
    tiles = iter(grid)
    while done < total:
        group = [tile for _, tile in zip(range(batch_size), tiles)]
        batch = np.empty((len(group), image.shape[0], *grid.tile_shape), dtype=np.float32)
        for k, tile in enumerate(group):
            batch[k] = grid.extract(image, tile)
        result = _as_float32_array(predict(batch))
        del batch
        _check_output(result, len(group), None if output is None else output.shape[0], grid.tile_shape)
        if output is None:
            output = np.zeros((result.shape[1], *spatial), dtype=np.float32)
        for k, tile in enumerate(group):
            weights = weight_cache.get(tile.neighbours)
            if weights is None:
                weights = weight_cache.setdefault(tile.neighbours, grid.weights(tile))
            output[(slice(None),) + tile.destination] += result[k][(slice(None),) + tile.crop] * weights[tile.crop]
        done += len(group)
        yield done, total
    assert output is not None
    for d, sums in enumerate(grid.weight_sums()):
        shape = [1] * output.ndim
        shape[d + 1] = -1
        output /= sums.astype(np.float32).reshape(shape)
    return output


def predict_tiled(
    image: np.ndarray,
    predict: Predict,
    *,
    tile_shape: int | Sequence[int],
    overlap: int | Sequence[int],
    multiple_of: int | Sequence[int] = 1,
    batch_size: int = 1,
    out_channels: int | None = None,
    margin: int | Sequence[int] | None = None,
    progress: Callable[[int, int], Any] | None = None,
) -> np.ndarray:
    """Run ``predict`` over overlapping tiles of a (C, *spatial) image and blend the outputs.

    ``predict`` takes a float32 (B, C, *tile) batch and returns (B, C_out, *tile) (numpy or a
    torch tensor). Memory: the output plus one batch, whatever the image size.
    """
    steps = iter_predict_tiled(image, predict, tile_shape=tile_shape, overlap=overlap, multiple_of=multiple_of,
                               batch_size=batch_size, out_channels=out_channels, margin=margin)

    def report(step: tuple[int, int]) -> None:
        if progress is not None:
            progress(*step)

    return drive(steps, report)


# -- tile size ------------------------------------------------------------------------------
def choose_tile_shape(
    spatial_shape: Sequence[int],
    preferred: int | Sequence[int],
    multiple_of: int | Sequence[int] = 1,
    max_voxels: int | None = None,
) -> tuple[int, ...]:
    """A tile no bigger than ``preferred`` or than needed for the image, a multiple of
    ``multiple_of``, halved along its largest axes until it has at most ``max_voxels`` voxels
    (or is as small as it can be)."""
    ndim = len(spatial_shape)
    multiples = _per_axis(multiple_of, ndim, "multiple_of")
    tile = tuple(min(_round_up(p, k), _round_up(int(n), k))
                 for p, n, k in zip(_per_axis(preferred, ndim, "preferred"), spatial_shape, multiples))
    while max_voxels is not None and math.prod(tile) > max_voxels:
        smaller = shrink_tile_shape(tile, multiples)
        if smaller == tile:
            break
        tile = smaller
    return tile


def fit_tile_shape_to_memory(
    spatial_shape: Sequence[int],
    preferred: int | Sequence[int],
    multiple_of: int | Sequence[int] = 1,
    *,
    free_bytes: int | None,
    bytes_per_voxel: float,
    batch_size: int = 1,
    headroom: float = 0.6,
) -> tuple[int, ...]:
    """``choose_tile_shape`` with a voxel budget of ``headroom * free_bytes`` spread over the
    batch, ``bytes_per_voxel`` being the network's cost per tile voxel (activations included).
    Unknown free memory (``None``) means no budget."""
    if free_bytes is None:
        return choose_tile_shape(spatial_shape, preferred, multiple_of)
    budget = int(headroom * free_bytes / (max(bytes_per_voxel, 1e-9) * max(batch_size, 1)))
    return choose_tile_shape(spatial_shape, preferred, multiple_of, max_voxels=max(budget, 1))


def shrink_tile_shape(tile_shape: Sequence[int], multiple_of: int | Sequence[int] = 1) -> tuple[int, ...]:
    """Halve the largest axes (kept multiples of ``multiple_of``), for an out-of-memory retry.

    Returns the same shape when no axis can shrink any more."""
    tile = tuple(int(t) for t in tile_shape)
    multiples = _per_axis(multiple_of, len(tile), "multiple_of")
    candidates = [d for d, (t, k) in enumerate(zip(tile, multiples)) if t > k]
    if not candidates:
        return tile
    largest = max(tile[d] for d in candidates)
    return tuple(max(k, _round_up(t // 2, k)) if d in candidates and t == largest else t
                 for d, (t, k) in enumerate(zip(tile, multiples)))


# -- helpers --------------------------------------------------------------------------------
def _check_output(result: np.ndarray, batch: int, channels: int | None, tile: tuple[int, ...]) -> None:
    if (result.ndim == len(tile) + 2 and result.shape[0] == batch and result.shape[2:] == tile
            and channels in (None, result.shape[1])):
        return
    want = f"({batch}, {'C_out' if channels is None else channels}, {', '.join(map(str, tile))})"
    raise ModelError(f"The model returned an output of shape {tuple(result.shape)} for a tile batch that needs "
                     f"{want}; a model must keep the size of its input tile.")


def _layout_1d(size: int, tile: int, overlap: int, multiple: int, margin: int | None
               ) -> tuple[int, int, int, int, int, int, int]:
    """(tile, overlap, margin, stride, count, pad_before, pad_after) along one axis."""
    tile = _round_up(tile, multiple)
    if tile - overlap < multiple:  # tile too small for the overlap: keep about half of it
        overlap = tile - max(multiple, (tile // 2) // multiple * multiple)
    margin = overlap // 4 if margin is None else min(margin, overlap // 2)
    padded = size + 2 * margin
    if padded <= tile:
        tile = _round_up(padded, multiple)
        count, stride, overlap = 1, tile, 0
    else:
        max_stride = (tile - overlap) // multiple * multiple
        count = 1 + -(-(padded - tile) // max_stride)
        stride = _round_up(-(-(padded - tile) // (count - 1)), multiple)
        overlap = tile - stride
    extra = tile + (count - 1) * stride - padded
    return tile, overlap, margin, stride, count, margin + extra // 2, margin + extra - extra // 2


def _profile_1d(length: int, overlap: int, margin: int, before: bool, after: bool) -> np.ndarray:
    weights = np.ones(length, dtype=np.float64)
    ramp_length = overlap - 2 * margin
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp_length) + 0.5) / max(ramp_length, 1))
    if before:
        weights[:margin] = 0.0
        weights[margin:margin + ramp_length] *= ramp
    if after:
        weights[length - margin:] = 0.0
        weights[length - margin - ramp_length:length - margin] *= ramp[::-1]
    return weights


def _outer(profiles: list[np.ndarray]) -> np.ndarray:
    weights = profiles[0]
    for profile in profiles[1:]:
        weights = np.multiply.outer(weights, profile)
    return weights.astype(np.float32)


def _reflect_indices(coords: np.ndarray, size: int) -> np.ndarray:
    """Map coordinates outside [0, size) back inside by mirror reflection (numpy 'reflect',
    repeated for long pads); a 1-pixel axis repeats its pixel (edge)."""
    if size == 1:
        return np.zeros_like(coords)
    period = 2 * (size - 1)
    folded = np.mod(coords, period)
    return np.where(folded >= size, period - folded, folded)


def _as_float32_array(result: Any) -> np.ndarray:
    if hasattr(result, "detach"):  # a torch tensor, possibly on a GPU
        result = result.detach().float().cpu().numpy()
    return np.asarray(result, dtype=np.float32)


def _per_axis(value: int | Sequence[int], ndim: int, name: str, *, minimum: int = 1) -> list[int]:
    values = [int(value)] * ndim if np.isscalar(value) else [int(v) for v in value]  # type: ignore[arg-type]
    if len(values) != ndim:
        raise ValueError(f"{name} has {len(values)} values for an image with {ndim} spatial axes")
    if min(values) < minimum:
        raise ValueError(f"{name} values must be at least {minimum}, got {tuple(values)}")
    return values


def _round_up(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple
