"""Streaming, flat-memory tiled prediction of one 2D plane: read a band, predict its tiles, emit rows.

The plane is a (C, Y, X) array that may be lazy (``io.ome_zarr.LazyArray``, a TIFF read through
tifffile's zarr store or a memory map): only ``source[:, lo:hi, :]`` bands are ever converted. The
tile grid is the one ``core.tiling.iter_predict_tiled`` uses, and tiles are blended with the same
weights, but the accumulator holds one row of tiles (plus the rows its neighbours below still add
to) instead of the whole output: rows no later tile touches are divided by the weight sums and
handed to ``emit``. With test-time augmentation every tile is predicted under every flip/rotation
and its mean and variance (Welford) are blended, so no whole-image transform is ever made.

Normalization statistics come from a first pass over the plane, band by band (see ``fit_streaming``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Generator, Sequence

import numpy as np

from labelfree_app.core.normalize import DEFAULT_SAMPLE_LIMIT, Normalizer, _no_finite_values
from labelfree_app.core.tiling import TileGrid, _as_float32_array, _check_output, _reflect_indices
from labelfree_app.core.welford import Welford

# Rows read at once by the statistics pass; bands of the prediction pass are one row of tiles.
STATS_BAND_ROWS = 128
# Above this many bytes per band row (X × channels × 4), tiles get shorter and wider (same area).
BAND_ROW_BUDGET_BYTES = 16 * 1024 * 1024

Emit = Callable[[int, np.ndarray, "np.ndarray | None", "np.ndarray | None"], None]


@dataclass(frozen=True)
class StreamedResult:
    """What a streamed prediction leaves besides its files: the facts provenance and reports need."""

    axes: str
    shape: tuple[int, ...]  # (T, C, Z, Y, X) of the prediction
    channel_names: tuple[str, ...]
    model_id: str
    settings: dict[str, Any]
    seconds: float
    device: str
    backend: str
    notes: tuple[str, ...]
    has_variance: bool


def read_band(source: Any, lo: int, hi: int) -> np.ndarray:
    """Rows ``lo:hi`` of a (C, Y, X) array (lazy or not) as a numpy array in the source's type."""
    return np.asarray(source[:, lo:hi, :])


def fit_streaming(source: Any, normalizer: Normalizer, *, band_rows: int = STATS_BAND_ROWS,
                  sample_limit: int = DEFAULT_SAMPLE_LIMIT) -> Normalizer:
    """Fit ``normalizer`` on a (C, Y, X) plane read band by band (non-finite pixels ignored).

    Choice: one full first pass. z-score mean/std (float64, Chan's merge of per-band moments) and
    min/max are exact, i.e. the whole-image statistics up to summation order; percentiles come
    from the same deterministic strided sample ``normalize.strided_sample`` takes (every s-th row
    and column, s chosen so at most ~``sample_limit`` pixels are kept), as ``fit_normalizer`` does
    for big arrays. Memory: one band plus the sample (≤ 32 MB)."""
    _, height, width = source.shape
    count, mean, m2 = 0, 0.0, 0.0
    lo_v, hi_v = math.inf, -math.inf
    step = max(1, math.ceil(math.sqrt(height * width * source.shape[0] / sample_limit)))
    samples: list[np.ndarray] = []
    for lo in range(0, height, band_rows):
        band = read_band(source, lo, min(height, lo + band_rows))
        values = band.astype(np.float64, copy=False).reshape(-1)
        if band.dtype.kind == "f":
            values = values[np.isfinite(values)]
        if values.size:
            b_mean = float(values.mean())
            b_m2 = float(np.dot(values - b_mean, values - b_mean))
            total = count + values.size
            delta = b_mean - mean
            mean += delta * values.size / total
            m2 += b_m2 + delta * delta * count * values.size / total
            count = total
            lo_v, hi_v = min(lo_v, float(values.min())), max(hi_v, float(values.max()))
        if normalizer.method == "percentile":
            first = (-lo) % step
            samples.append(band[:, first::step, ::step].astype(np.float64).reshape(-1))
    if count == 0:
        raise _no_finite_values()
    if normalizer.method == "zscore":
        return Normalizer("zscore", {"mean": mean, "std": math.sqrt(m2 / count)})
    if normalizer.method == "minmax":
        return Normalizer("minmax", {"low_value": lo_v, "high_value": hi_v})
    sample = np.concatenate(samples)
    sample = sample[np.isfinite(sample)]
    low, high = normalizer.percentiles
    lo_p, hi_p = np.percentile(sample, [low, high])
    return Normalizer("percentile", {"low": low, "high": high, "low_value": float(lo_p), "high_value": float(hi_p)})


def band_tile_shape(tile: Sequence[int], width: int, channels: int, multiple: int,
                    budget: int = BAND_ROW_BUDGET_BYTES) -> tuple[int, int]:
    """Keep the band (tile height × width × channels × 4 bytes) under ``budget`` for very wide
    images by making tiles shorter and wider with the same area; small images keep ``tile``."""
    ty, tx = int(tile[0]), int(tile[1])
    rows = budget // max(1, width * max(channels, 1) * 4)
    if rows >= ty:
        return ty, tx
    new_ty = min(ty, max(256, 4 * multiple, rows // multiple * multiple))
    new_tx = -(-(ty * tx // new_ty) // multiple) * multiple
    return new_ty, new_tx


def stream_plane(
    source: Any,
    predict: Callable[[np.ndarray], Any],
    grid: TileGrid,
    normalizer: Normalizer,
    emit: Emit,
    *,
    batch_size: int = 1,
    transforms: Sequence[tuple[Any, Any]] | None = None,
) -> Generator[tuple[int, int], None, int]:
    """Predict a (C, Y, X) ``source`` on ``grid``; yields (tiles done, total), returns the number of
    non-finite input values.

    ``emit(y0, prediction, variance, missing)`` gets finished rows in order: (C_out, h, X) float32
    blended prediction (z-scores), the blended variance over ``transforms`` (None without TTA) and
    an (h, X) mask of pixels where any input channel was not finite (None when all were)."""
    if len(grid.spatial_shape) != 2:
        raise ValueError("stream_plane takes a 2D tile grid")
    height, width = grid.spatial_shape
    tta = transforms is not None and len(transforms) > 1
    transforms = list(transforms or [(lambda a: a, lambda a: a)])
    y_sums, x_sums = (s.astype(np.float32) for s in grid.weight_sums())
    rows_tiles, cols_tiles = grid.counts
    total = grid.n_tiles
    weights: dict[tuple[tuple[bool, bool], ...], np.ndarray] = {}
    x_index = _reflect_indices(np.arange(grid.padded_shape[1]) - grid.pad_before[1], width)
    acc: np.ndarray | None = None  # (C_out, rows, X) sum of w * mean from image row acc_lo on
    acc_var: np.ndarray | None = None
    missing = np.zeros((0, width), dtype=bool)
    acc_lo = 0
    counted_to = 0
    non_finite = 0
    done = 0
    for i in range(rows_tiles):
        row_tiles = [grid._tile(i * cols_tiles + j, (i, j)) for j in range(cols_tiles)]
        src = row_tiles[0].source[0]
        y_index = _reflect_indices(np.arange(src.start, src.stop) - grid.pad_before[0], height)
        lo, hi = int(y_index.min()), int(y_index.max()) + 1
        band = read_band(source, lo, hi)
        bad = None
        if band.dtype.kind == "f":
            finite = np.isfinite(band)
            if not finite.all():
                bad = ~finite.all(axis=0)  # (rows, X)
                new_from = max(counted_to, lo)
                if new_from < hi:
                    non_finite += int((~finite[:, new_from - lo:]).sum())
            del finite
        counted_to = max(counted_to, hi)
        x = normalizer.apply(band)
        del band
        np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        strip = x[:, y_index - lo]  # (C, tile_y, X): rows reflected at the image edges
        del x
        dest_y = row_tiles[0].destination[0]
        end = dest_y.stop
        if acc is not None and end - acc_lo > acc.shape[1]:
            grow = end - acc_lo - acc.shape[1]
            acc = np.concatenate([acc, np.zeros((acc.shape[0], grow, width), np.float32)], axis=1)
            if acc_var is not None:
                acc_var = np.concatenate([acc_var, np.zeros((acc_var.shape[0], grow, width), np.float32)], axis=1)
            missing = np.concatenate([missing, np.zeros((grow, width), bool)])
        elif acc is None:
            missing = np.zeros((end - acc_lo, width), dtype=bool)
        if bad is not None:
            missing[dest_y.start - acc_lo:end - acc_lo] |= bad[dest_y.start - lo:end - lo]
        for start in range(0, cols_tiles, batch_size):
            group = row_tiles[start:start + batch_size]
            batch = np.stack([strip[:, :, x_index[t.source[1]]] for t in group])
            stats = Welford(np.float32)
            for forward, inverse in transforms:
                out = _as_float32_array(predict(np.ascontiguousarray(forward(batch))))
                out = np.ascontiguousarray(inverse(out))
                _check_output(out, len(group), None, grid.tile_shape)
                if tta:
                    stats.update(out)
                else:
                    mean_out = out
            del batch
            if tta:
                mean_out, var_out = stats.mean, stats.variance
            if acc is None:
                acc = np.zeros((mean_out.shape[1], end - acc_lo, width), np.float32)
                if tta:
                    acc_var = np.zeros_like(acc)
            for k, tile in enumerate(group):
                w = weights.get(tile.neighbours)
                if w is None:
                    w = weights.setdefault(tile.neighbours, grid.weights(tile))
                region = (slice(None), slice(tile.destination[0].start - acc_lo, tile.destination[0].stop - acc_lo),
                          tile.destination[1])
                crop = (slice(None),) + tile.crop
                acc[region] += mean_out[k][crop] * w[tile.crop]
                if tta and acc_var is not None:
                    acc_var[region] += var_out[k][crop] * w[tile.crop]
            done += len(group)
            yield done, total
        del strip
        # rows above the next tile row's first destination row are final
        final_to = height if i == rows_tiles - 1 else grid._tile(0, (i + 1, 0)).destination[0].start
        n = final_to - acc_lo
        if n > 0 and acc is not None:
            scale = y_sums[acc_lo:final_to, None] * x_sums[None, :]
            out_rows = acc[:, :n] / scale
            var_rows = acc_var[:, :n] / scale if acc_var is not None else None
            mask = missing[:n]
            emit(acc_lo, out_rows, var_rows, mask if mask.any() else None)
            acc = acc[:, n:].copy()
            acc_var = acc_var[:, n:].copy() if acc_var is not None else None
            missing = missing[n:].copy()
            acc_lo = final_to
    return non_finite
