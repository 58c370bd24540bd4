"""Streaming, flat-memory tiled prediction: read a band, predict its tiles, emit finished rows.

A plane is a (C, Y, X) array that may be lazy (``io.lazy.LazyArray`` over a TIFF's tiles, strips or
rows, or an OME-Zarr's chunks): only ``source[:, lo:hi, :]`` bands are ever converted, in
the source's own pixel type (a row chunk of the file that a band cuts across is decoded again by the
next band, unless chunks are many bands tall); tiles are
cut from the band and normalized one batch at a time. The tile grid is the one
``core.tiling.iter_predict_tiled`` uses, with the same blend weights, but the accumulator holds one
row of tiles (a fixed buffer reused down the plane) instead of the whole output: rows no later tile
touches are divided by the weight sums in place and handed to ``emit`` a few rows at a time. With
test-time augmentation every tile is predicted under every flip/rotation and its mean and variance
(Welford) are blended, so no whole-image transform is ever made. Tiles of very wide planes get
shorter and wider (same area) so the band stays under ``BAND_BUDGET_BYTES`` whatever the width.

Normalization statistics come from one downsampled read of the plane (``fit_streaming``).
``stream_series`` runs every time point and plane of an image through ``stream_plane`` into a sink;
the engine hands it what it needs of the model as a ``StreamSpec``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Generator, Sequence

import numpy as np

from labelfree_app.core.drive import relay
from labelfree_app.core.events import Progress
from labelfree_app.core.inputs import naming_frame
from labelfree_app.core.normalize import DEFAULT_SAMPLE_LIMIT, Normalizer, _no_finite_values
from labelfree_app.core.tiling import TileGrid, _as_float32_array, _check_output, _reflect_indices
from labelfree_app.core.welford import Welford

# The input band (source pixel type) plus the accumulators (float32) of one row of tiles stay under this.
BAND_BUDGET_BYTES = 24 * 1024 * 1024
# Finished rows are divided, converted and written this many bytes at a time.
EMIT_BUDGET_BYTES = 4 * 1024 * 1024
# Rows read at once by the statistics pass when the source has no row chunks of its own.
STATS_BAND_ROWS = 512
# A band is read into its buffer this many bytes (whole chunks) at a time.
READ_BLOCK_BYTES = 4 * 1024 * 1024
# Row chunks up to this many bands tall are decoded again by each band they cross, not kept.
REDECODE_MAX_RATIO = 4

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
    trust: Any = None  # core.trust.TrustEstimate (None: not estimated)
    trust_map: np.ndarray | None = None  # familiarity, the prediction's axes with one channel (None: none drawn)


@dataclass(frozen=True)
class StreamSpec:
    """What streaming needs of a loaded 2D model; the engine builds it, ``stream_series`` uses it."""

    predict: Callable[[np.ndarray], Any]  # normalized (B, C, *tile) float32 -> (B, C_out, *tile)
    normalizer: Normalizer  # unfitted: fitted on each plane
    tile: tuple[int, int]
    halo: tuple[int, int]
    batch_size: int
    multiple: int
    out_channels: int
    channel_names: tuple[str, ...]
    z_as_channels: bool
    transforms: Sequence[tuple[Any, Any]] | None  # test-time augmentation, None without
    # (mean, variance or None, missing mask or None) in z-scores -> (prediction, variance) in output units
    finish_rows: Callable[[np.ndarray, "np.ndarray | None", "np.ndarray | None"], tuple[np.ndarray, "np.ndarray | None"]]
    trust: Any = None  # core.trust_recorder.TrustRecorder: watches each plane (None: no estimate)


@dataclass(frozen=True)
class StreamOutcome:
    """What ``stream_series`` returns: the output shape, the tile used and the non-finite input count."""

    shape: tuple[int, int, int, int, int]  # (T, C, Z, Y, X)
    tile: tuple[int, int]
    non_finite: int


def read_band(source: Any, lo: int, hi: int) -> np.ndarray:
    """Rows ``lo:hi`` of a (C, Y, X) array (lazy or not) as a numpy array in the source's type."""
    return np.asarray(source[:, lo:hi, :])


def row_chunk(source: Any) -> int:
    """The row-chunk height of a lazy (C, Y, X) source (1 for numpy arrays and unknown layouts)."""
    return _chunk(source, -2, 1)


def _chunk(source: Any, axis: int, default: int) -> int:
    chunks = getattr(source, "chunks", None)
    try:
        return max(1, int(chunks[axis][0]))
    except (TypeError, IndexError, ValueError):
        return default


class _RowReader:
    """Rows of a (C, Y, X) source read once each, kept while still asked for.

    The rows live in one buffer allocated once (``max_rows``): rows still needed move to its top
    and new rows are read below them, a few MB at a time (column blocks of whole chunks of the
    source when its chunks are narrower than the plane), so memory is the same for every band and
    every plane of that width, however many there are. A stored chunk that a band cuts across is
    decoded again by the next band (a tile or strip costs far less to decode than to predict) unless
    it is more than ``REDECODE_MAX_RATIO`` bands tall (one strip for a whole image): then reads
    go on to the end of the chunk and the buffer holds those rows too, so no chunk is decoded twice."""

    def __init__(self, source: Any, max_rows: int) -> None:
        self.source, self.height = source, int(source.shape[1])
        chunk = row_chunk(source)
        self.align = chunk if chunk > REDECODE_MAX_RATIO * int(max_rows) else 1
        self.capacity = min(self.height, int(max_rows) + self.align - 1)
        self.lo = self.hi = 0  # buffer[:, :hi - lo] holds rows lo:hi
        self.buffer: np.ndarray | None = None

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi`` (``lo`` never decreasing between calls) in the source's pixel type: a view of
        the reused buffer, valid until the next call."""
        if isinstance(self.source, np.ndarray):  # already in memory: a view, no copy
            return self.source[:, lo:hi]
        if self.buffer is None or not (self.lo <= lo and hi <= self.hi):
            if self.buffer is None or not self.lo <= lo <= self.hi:
                self.lo = self.hi = lo  # nothing held is wanted any more
            stop = min(self.height, max(hi, -(-hi // self.align) * self.align))
            buffer = self._room(stop - lo)
            kept = self.hi - lo
            if kept and lo > self.lo:  # the rows still wanted move to the top of the buffer
                buffer[:, :kept] = buffer[:, lo - self.lo:self.hi - self.lo]
            self._fill(buffer[:, kept:stop - lo], self.hi, stop)
            self.lo, self.hi = lo, stop
        assert self.buffer is not None
        return self.buffer[:, lo - self.lo:hi - self.lo]

    def _room(self, rows: int) -> np.ndarray:
        """The buffer, allocated on first use (or grown, for a caller asking more rows than promised)."""
        if self.buffer is None or self.buffer.shape[1] < rows:
            shape = (int(self.source.shape[0]), max(rows, self.capacity), int(self.source.shape[2]))
            old, self.buffer = self.buffer, np.empty(shape, dtype=np.dtype(self.source.dtype))
            if old is not None and self.hi > self.lo:
                self.buffer[:, :self.hi - self.lo] = old[:, :self.hi - self.lo]
        return self.buffer

    def _fill(self, out: np.ndarray, lo: int, hi: int) -> None:
        """Read rows ``lo:hi`` into ``out`` in blocks of whole chunks of at most ~``READ_BLOCK_BYTES``
        (row chunks across the width when they are that small)."""
        if hi <= lo:
            return
        width = int(self.source.shape[2])
        column = _chunk(self.source, -1, width)
        row_bytes = max(1, int(self.source.shape[0]) * (hi - lo) * np.dtype(self.source.dtype).itemsize)
        step = width if column >= width else max(1, READ_BLOCK_BYTES // (row_bytes * column)) * column
        for x0 in range(0, width, step):
            out[:, :, x0:x0 + step] = np.asarray(self.source[:, lo:hi, x0:min(width, x0 + step)])


def fit_streaming(source: Any, normalizer: Normalizer, *, sample_limit: int = DEFAULT_SAMPLE_LIMIT) -> Normalizer:
    """Fit ``normalizer`` on a (C, Y, X) plane from one downsampled read (non-finite pixels ignored).

    Choice: every s-th row and column, s the smallest stride that keeps at most ~``sample_limit``
    values (s = 1, i.e. exact whole-image statistics, for planes up to that size); mean/std
    (float64), min/max and percentiles all come from that sample. The read goes band by band in
    the source's row chunks, so each chunk is decoded once, into one sample array of the source's
    pixel type (integers are exact in float64, so only float samples are converted); mean and std
    are summed in float64 a block at a time. Memory is one band plus the sample, whatever the plane."""
    channels, height, width = (int(n) for n in source.shape)
    step = max(1, math.ceil(math.sqrt(channels * height * width / sample_limit)))
    band = max(row_chunk(source), STATS_BAND_ROWS)
    sample = np.empty((channels, len(range(0, height, step)), len(range(0, width, step))),
                      dtype=np.dtype(source.dtype).newbyteorder("="))
    for lo in range(0, height, band):  # rows lo + first, lo + first + step, ...: every s-th row of the plane
        first = -lo % step
        if lo + first < min(height, lo + band):
            sample[:, (lo + first) // step:-(-min(height, lo + band) // step)] = np.asarray(
                source[:, lo + first:min(height, lo + band):step, ::step])
    flat = sample.reshape(-1)
    if flat.dtype.kind == "f":
        flat = flat[np.isfinite(flat)].astype(np.float64)
    elif flat.dtype.kind not in "iu":
        flat = flat.astype(np.float64)
    if flat.size == 0:
        raise _no_finite_values()
    if normalizer.method == "zscore":
        mean, std = _mean_std(flat)
        return Normalizer("zscore", {"mean": mean, "std": std})
    if normalizer.method == "minmax":
        return Normalizer("minmax", {"low_value": float(flat.min()), "high_value": float(flat.max())})
    low, high = normalizer.percentiles
    lo_p, hi_p = np.percentile(flat, [low, high])
    return Normalizer("percentile", {"low": low, "high": high, "low_value": float(lo_p), "high_value": float(hi_p)})


def _mean_std(values: np.ndarray, block: int = 1 << 18) -> tuple[float, float]:
    """Mean and (population) standard deviation in float64; the deviations are squared ``block``
    values at a time, so no float64 copy of a large integer sample is made (``np.std`` would)."""
    mean = float(values.mean(dtype=np.float64))  # a buffered reduction: no copy either
    squares = 0.0
    for i in range(0, values.size, block):
        d = values[i:i + block].astype(np.float64)
        d -= mean
        squares += float(np.square(d, out=d).sum())  # not np.dot: BLAS threads would spin for this
    return mean, math.sqrt(squares / values.size)


def band_tile_shape(tile: Sequence[int], width: int, bytes_per_row_pixel: int, multiple: int,
                    budget: int = BAND_BUDGET_BYTES) -> tuple[int, int]:
    """Keep a band (tile height × ``width`` × ``bytes_per_row_pixel``) under ``budget`` for very wide
    planes by making tiles shorter and wider with the same area; small planes keep ``tile``."""
    ty, tx = int(tile[0]), int(tile[1])
    rows = budget // max(1, width * bytes_per_row_pixel)
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
    on_band: Callable[[np.ndarray, int, int], None] | None = None,
) -> Generator[tuple[int, int], None, int]:
    """Predict a (C, Y, X) ``source`` on ``grid``; yields (tiles done, total), returns the number of
    non-finite input values.

    ``emit(y0, prediction, variance, missing)`` gets finished rows in order: (C_out, h, X) float32
    blended prediction (z-scores), the blended variance over ``transforms`` (None without TTA) and
    an (h, X) mask of pixels where any input channel was not finite (None when all were). The
    arrays are views of buffers reused for the next rows: use them before returning. ``on_band(band,
    lo, hi)`` sees each raw band of input rows ``[lo, hi)`` as it is read."""
    if len(grid.spatial_shape) != 2:
        raise ValueError("stream_plane takes a 2D tile grid")
    height, width = grid.spatial_shape
    tta = transforms is not None and len(transforms) > 1
    transforms = list(transforms or [(lambda a: a, lambda a: a)])
    y_sums, x_sums = (s.astype(np.float32) for s in grid.weight_sums())
    rows_tiles, cols_tiles = grid.counts
    total = grid.n_tiles
    x_index = _reflect_indices(np.arange(grid.padded_shape[1]) - grid.pad_before[1], width)
    reader = _RowReader(source, grid.tile_shape[0])
    capacity = grid.tile_shape[0]  # a row of tiles writes at most this many image rows
    acc: np.ndarray | None = None  # (C_out, capacity, X) sum of w * mean from image row acc_lo on
    acc_var: np.ndarray | None = None
    missing: np.ndarray | None = None  # (capacity, X) pixels with a non-finite input, once there is one
    acc_lo = counted_to = non_finite = done = 0
    for i in range(rows_tiles):
        row_tiles = [grid._tile(i * cols_tiles + j, (i, j)) for j in range(cols_tiles)]
        src = row_tiles[0].source[0]
        y_index = _reflect_indices(np.arange(src.start, src.stop) - grid.pad_before[0], height)
        lo, hi = int(y_index.min()), int(y_index.max()) + 1
        band = reader.rows(lo, hi)
        if on_band is not None:
            on_band(band, lo, hi)
        dest_y = row_tiles[0].destination[0]
        if band.dtype.kind == "f":
            finite = np.isfinite(band)
            if not finite.all():
                if counted_to < hi:
                    non_finite += int((~finite[:, max(counted_to, lo) - lo:]).sum())
                bad = ~finite.all(axis=0)  # (rows, X)
                if missing is None:
                    missing = np.zeros((capacity, width), dtype=bool)
                missing[dest_y.start - acc_lo:dest_y.stop - acc_lo] |= bad[dest_y.start - lo:dest_y.stop - lo]
            del finite
        counted_to = max(counted_to, hi)
        rows_index = (y_index - lo)[:, None]
        for start in range(0, cols_tiles, batch_size):
            group = row_tiles[start:start + batch_size]
            batch = normalizer.apply(np.stack([band[:, rows_index, x_index[t.source[1]][None, :]] for t in group]))
            np.nan_to_num(batch, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
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
                acc = np.zeros((mean_out.shape[1], capacity, width), np.float32)
                acc_var = np.zeros_like(acc) if tta else None
            for k, tile in enumerate(group):
                w = grid.weights(tile)  # made per tile (an outer product): nine cached ones would be 9 tiles of memory
                region = (slice(None), slice(tile.destination[0].start - acc_lo, tile.destination[0].stop - acc_lo),
                          tile.destination[1])
                crop = (slice(None),) + tile.crop
                acc[region] += mean_out[k][crop] * w[tile.crop]
                if acc_var is not None:
                    acc_var[region] += var_out[k][crop] * w[tile.crop]
            done += len(group)
            yield done, total
        # rows above the next tile row's first destination row are final
        final_to = height if i == rows_tiles - 1 else grid._tile(0, (i + 1, 0)).destination[0].start
        n = final_to - acc_lo
        if n > 0 and acc is not None:
            _emit_rows(emit, acc, acc_var, missing, acc_lo, n, y_sums, x_sums)
            used = dest_y.stop - acc_lo
            for buffer in (acc, acc_var):
                if buffer is not None:
                    buffer[:, :used - n] = buffer[:, n:used]
                    buffer[:, used - n:] = 0
            if missing is not None:
                missing[:used - n] = missing[n:used]
                missing[used - n:] = False
            acc_lo = final_to
    return non_finite


def _emit_rows(emit: Emit, acc: np.ndarray, acc_var: np.ndarray | None, missing: np.ndarray | None, acc_lo: int,
               n: int, y_sums: np.ndarray, x_sums: np.ndarray) -> None:
    """Divide the first ``n`` accumulated rows by the weight sums in place and emit them in small blocks."""
    step = max(1, EMIT_BUDGET_BYTES // max(1, acc.shape[0] * acc.shape[2] * 4))
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        parts = [acc[:, r0:r1]] + ([acc_var[:, r0:r1]] if acc_var is not None else [])
        for part in parts:
            part /= y_sums[acc_lo + r0:acc_lo + r1, None]
            part /= x_sums[None, None, :]
        mask = None if missing is None else missing[r0:r1]
        emit(acc_lo + r0, parts[0], parts[1] if acc_var is not None else None,
             mask if mask is not None and mask.any() else None)


def stream_series(select: Callable[[int], Any], times: Sequence[int], spec: StreamSpec,
                  sink: Any, name: str | None = None) -> Generator[Progress, None, StreamOutcome]:
    """Predict every time point in ``times`` and every plane into ``sink``; yields progress.

    ``select(t)`` gives time point t as a lazy (Z, Y, X) or (C, Z, Y, X) array; one plane of one time
    point is read at a time. ``sink.begin(shape, channel_names, has_variance)`` gets the (T, C, Z, Y, X)
    output shape, then ``sink.write(t, z, y0, prediction, variance)`` finished (C, h, X) float32 rows in
    output units (NaN where the input was not finite)."""
    first = select(times[0])
    lead = (1,) + tuple(first.shape) if len(first.shape) == 3 else tuple(first.shape)  # (C, Z, Y, X)
    n_planes = 1 if spec.z_as_channels else int(lead[1])
    in_channels = int(lead[1]) if spec.z_as_channels else int(lead[0])
    height, width = int(lead[2]), int(lead[3])
    tta = spec.transforms is not None and len(spec.transforms) > 1
    per_pixel = in_channels * np.dtype(first.dtype).itemsize + spec.out_channels * 4 * (2 if tta else 1)
    tile = band_tile_shape(spec.tile, width, per_pixel, spec.multiple)
    grid = TileGrid.create((height, width), tile, tuple(2 * h for h in spec.halo), multiple_of=spec.multiple,
                           margin=spec.halo)
    shape = (len(times), spec.out_channels, n_planes, height, width)
    sink.begin(shape, spec.channel_names, tta)
    passes, non_finite = len(times) * n_planes, 0
    for ti, t in enumerate(times):
        selected = first if ti == 0 else select(t)
        for z in range(n_planes):
            if spec.z_as_channels:
                source = selected if len(selected.shape) == 3 else selected[0]
            else:
                source = selected[z:z + 1] if len(selected.shape) == 3 else selected[:, z]

            watcher = spec.trust.watch_plane(height, width) if spec.trust is not None else None
            with naming_frame(name, t, len(times)):  # an empty frame of a series is named
                normalizer = fit_streaming(source, spec.normalizer)

            def emit(y0: int, mean: np.ndarray, var: np.ndarray | None, missing: np.ndarray | None,
                     ti: int = ti, z: int = z, watcher: Any = watcher) -> None:
                if watcher is not None:
                    watcher.rows(y0, mean)
                sink.write(ti, z, y0, *spec.finish_rows(mean, var, missing))

            index = ti * n_planes + z
            label = f"plane {index + 1}/{passes}" if passes > 1 else ""
            steps = stream_plane(source, spec.predict, grid, normalizer, emit, batch_size=spec.batch_size,
                                 transforms=spec.transforms, on_band=None if watcher is None else (
                                     lambda band, lo, hi, w=watcher, n=normalizer: w.band(band, lo, hi, n)))
            non_finite += yield from relay(
                steps, lambda step, index=index, label=label: Progress(
                    "tiles", index * step[1] + step[0], passes * step[1], label))
            if watcher is not None:
                spec.trust.add_watched(watcher)
        del selected
    return StreamOutcome(shape, (int(grid.tile_shape[0]), int(grid.tile_shape[1])), non_finite)
