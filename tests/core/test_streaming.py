"""Streaming prediction: band-buffer blending equals whole-image tiling, the input is never read whole,
and the streamed files equal the whole-image path's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from labelfree_app.batch import process
from labelfree_app.core.engine import PredictionEngine, PredictSettings
from labelfree_app.core.normalize import Normalizer, fit_normalizer
from labelfree_app.core.streaming import fit_streaming, stream_plane
from labelfree_app.core.tiling import TileGrid, iter_predict_tiled
from labelfree_app.export import output_paths
from labelfree_app.io import read_image
from labelfree_app.io.image import Image
from tests.factories import make_unet_package


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


class GuardedArray:
    """A lazy-looking array: slicing stays lazy, converting more than ``limit`` elements raises."""

    def __init__(self, array: np.ndarray, limit: int, reads: list[int] | None = None) -> None:
        self._array, self.limit = array, limit
        self.reads = reads if reads is not None else []

    shape = property(lambda self: self._array.shape)
    dtype = property(lambda self: self._array.dtype)
    ndim = property(lambda self: self._array.ndim)
    size = property(lambda self: self._array.size)

    def __getitem__(self, key: Any) -> GuardedArray:
        return GuardedArray(self._array[key], self.limit, self.reads)

    def __len__(self) -> int:
        return len(self._array)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if self._array.size > self.limit:
            raise AssertionError(f"read {self._array.shape} whole")
        self.reads.append(self._array.size)
        return np.asarray(self._array, dtype=dtype)


def box_predict(batch: np.ndarray) -> np.ndarray:
    """A 3×3 box filter with zero padding (receptive-field radius 1) plus a pointwise term."""
    padded = np.pad(batch, [(0, 0), (0, 0), (1, 1), (1, 1)])
    out = sum(padded[:, :, dy:dy + batch.shape[2], dx:dx + batch.shape[3]] for dy in range(3) for dx in range(3))
    return np.concatenate([out / 9.0, batch ** 2], axis=1).astype(np.float32)


def _stream(source: Any, grid: TileGrid, normalizer: Normalizer, **kw: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    height, width = grid.spatial_shape
    out = np.full((2, height, width), np.inf, np.float32)
    var = np.full((2, height, width), np.inf, np.float32)
    mask = np.zeros((height, width), bool)
    seen: list[int] = []

    def emit(y0: int, p: np.ndarray, v: np.ndarray | None, m: np.ndarray | None) -> None:
        seen.append(y0)
        out[:, y0:y0 + p.shape[1]] = p
        if v is not None:
            var[:, y0:y0 + p.shape[1]] = v
        if m is not None:
            mask[y0:y0 + p.shape[1]] = m

    gen = stream_plane(source, box_predict, grid, normalizer, emit, **kw)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        count = stop.value
    assert seen == sorted(seen) and seen[0] == 0
    return out, (var if kw.get("transforms") else None), (mask, count)


@pytest.mark.parametrize("shape", [(150, 233), (61, 40), (300, 128)])
def test_band_streaming_equals_whole_image_tiling(shape, rng):
    image = rng.normal(size=(1, *shape)).astype(np.float32) * 3 + 10
    normalizer = fit_normalizer(image)
    grid = TileGrid.create(shape, (48, 64), (16, 16), multiple_of=8, margin=4)
    gen = iter_predict_tiled(normalizer.apply(image), box_predict, tile_shape=(48, 64), overlap=(16, 16),
                             multiple_of=8, margin=4, batch_size=3)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        whole = stop.value
    streamed, _, (mask, count) = _stream(GuardedArray(image, limit=64 * shape[1]), grid, normalizer, batch_size=3)
    assert count == 0 and not mask.any()
    np.testing.assert_allclose(streamed, whole, rtol=1e-5, atol=1e-5)


def test_streaming_marks_non_finite_input_and_counts_each_value_once(rng):
    image = rng.normal(size=(1, 130, 90)).astype(np.float32)
    image[0, 5, 7] = np.nan
    image[0, 64:70, 10] = np.inf  # inside the rows two tile rows share
    grid = TileGrid.create((130, 90), 48, 16, multiple_of=8, margin=4)
    streamed, _, (mask, count) = _stream(image, grid, fit_normalizer(image), batch_size=2)
    assert count == 7
    assert np.array_equal(mask, ~np.isfinite(image[0]))
    assert np.isfinite(streamed).all()


def test_streamed_tta_variance_is_zero_for_a_flip_invariant_network(rng):
    image = rng.normal(size=(1, 100, 100)).astype(np.float32)
    grid = TileGrid.create((100, 100), 48, 16, multiple_of=8, margin=4)
    from labelfree_app.core.tta import tta_transforms

    out, var, _ = _stream(image, grid, fit_normalizer(image), transforms=tta_transforms(2))
    plain, _, _ = _stream(image, grid, fit_normalizer(image))
    np.testing.assert_allclose(out, plain, atol=1e-5)
    np.testing.assert_allclose(var, 0.0, atol=1e-6)


@pytest.mark.parametrize("method", ["zscore", "percentile", "minmax"])
def test_streaming_statistics_are_exact_up_to_the_sample_limit_then_sampled(method, rng):
    image = (rng.gamma(2.0, 300.0, size=(1, 700, 300))).astype(np.float32)
    image[0, 3, 3] = np.nan
    whole = fit_normalizer(image, method)
    exact = fit_streaming(image, Normalizer.unfitted(method))  # fewer pixels than the sample limit
    reads: list[int] = []
    sampled = fit_streaming(GuardedArray(image, limit=60_000, reads=reads), Normalizer.unfitted(method),
                            sample_limit=20_000)
    assert sum(reads) <= 2 * 20_000  # one downsampled read, never the whole plane
    for key, value in whole.params.items():
        assert exact.params[key] == pytest.approx(value, rel=1e-9)
        if method == "minmax":  # a sample's extremes lie inside the image's
            assert whole.params["low_value"] <= sampled.params["low_value"] <= sampled.params["high_value"]
            assert sampled.params["high_value"] <= whole.params["high_value"]
        else:
            assert sampled.params[key] == pytest.approx(value, rel=0.03)


def _prediction_of(engine: PredictionEngine, image: Image, settings: PredictSettings, tmp_path: Path,
                   name: str) -> tuple[np.ndarray, np.ndarray | None]:
    paths = output_paths(Path(f"{name}.tif"), "m", tmp_path)
    gen = process.stream_result(engine, image, settings, [], paths, hash_inputs=False)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        result, written = stop.value
    prediction = read_image(written[0]).data
    variance = read_image(written[1]).data if len(written) > 1 else None
    return prediction, variance


def test_streamed_engine_never_reads_the_input_whole_and_equals_run(tmp_path, rng):
    engine = PredictionEngine(make_unet_package(tmp_path), device="cpu")
    pixels = (rng.normal(size=(2, 1, 200, 170)) * 50 + 500).astype(np.float32)
    pixels[0, 0, 100, 30] = np.nan
    settings = PredictSettings(tile_shape=(64, 64))
    guarded = GuardedArray(pixels, limit=2 * 1 * 110 * 170)  # two channels × one band of rows
    image = Image(data=guarded, axes="CZYX", channel_names=("BF", "DNA"))  # type: ignore[arg-type]
    streamed, _ = _prediction_of(engine, image, PredictSettings(tile_shape=(64, 64), channel="BF"), tmp_path, "a")
    whole = engine.predict(Image(data=pixels, axes="CZYX", channel_names=("BF", "DNA")),
                           PredictSettings(tile_shape=(64, 64), channel="BF")).prediction
    assert guarded.reads and max(guarded.reads) <= guarded.limit
    assert np.isnan(streamed[0, 0, 100, 30]) and np.isnan(streamed).sum() == 1
    np.testing.assert_allclose(streamed, whole, rtol=1e-4, atol=1e-4, equal_nan=True)
    assert settings.tile_shape == (64, 64)


def test_streamed_tta_and_stacks_equal_the_whole_image_path(tmp_path, rng):
    engine = PredictionEngine(make_unet_package(tmp_path), device="cpu")
    pixels = (rng.normal(size=(1, 3, 96, 96)) * 50 + 500).astype(np.float32)  # 3 planes, one tile each
    image = Image(data=pixels, axes="CZYX", channel_names=("BF",))
    settings = PredictSettings(tta=True)
    streamed, variance = _prediction_of(engine, image, settings, tmp_path, "b")
    whole = engine.predict(image, settings)
    np.testing.assert_allclose(streamed, whole.prediction, rtol=1e-4, atol=1e-4)
    assert variance is not None and whole.variance is not None
    np.testing.assert_allclose(variance, whole.variance, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("layout", ["tiled", "zlib strips", "plain"])
def test_big_tiffs_are_read_lazily_with_the_same_pixels(tmp_path, rng, monkeypatch, layout):
    from labelfree_app.io import regions
    from labelfree_app.io.lazy import LazyArray

    monkeypatch.setattr(regions, "LAZY_MIN_BYTES", 0)
    monkeypatch.setattr(tifffile, "memmap", None)  # plain files are read by pread: no map to keep in memory
    pixels = rng.integers(0, 4000, size=(2, 300, 260), dtype=np.uint16)
    kwargs = {"tiled": {"tile": (64, 64)}, "zlib strips": {"compression": "zlib", "rowsperstrip": 16},
              "plain": {}}[layout]
    path = tmp_path / "big.ome.tif"
    tifffile.imwrite(path, pixels, ome=True, metadata={"axes": "CYX"}, **kwargs)
    lazy = read_image(path, lazy=True)
    assert isinstance(lazy.data, LazyArray)
    np.testing.assert_array_equal(np.asarray(lazy.data[1, 0, 10:40]), pixels[1, 10:40])
    np.testing.assert_array_equal(np.asarray(lazy.data), read_image(path).data)
    one = read_image(path, lazy=True, channel=1)
    np.testing.assert_array_equal(np.asarray(one.data)[0, 0], pixels[1])


@pytest.mark.parametrize("fmt", ["ome-tiff", "ome-zarr"])
def test_run_job_streams_big_inputs_into_the_same_files(tmp_path, rng, monkeypatch, fmt):
    from labelfree_app.batch.plan import BatchInput, BatchJob, model_ref

    package = make_unet_package(tmp_path)
    pixels = (rng.normal(size=(130, 150)) * 50 + 500).astype(np.float32)
    pixels[7, 9] = np.inf
    src = tmp_path / "in.ome.tif"
    tifffile.imwrite(src, pixels, ome=True, metadata={"axes": "YX"})
    options = process.BatchOptions(settings=PredictSettings(tile_shape=(64, 64), tta=True), hash_inputs=False,
                                   format=fmt, overwrite=True)
    job = BatchJob(0, BatchInput(path=src), model_ref(package))
    rows = {}
    for name, limit in (("whole", 10**12), ("streamed", 0)):
        monkeypatch.setattr(process, "STREAM_MIN_PIXELS", limit)
        rows[name] = process.process_job(job, tmp_path / name, options, process.EngineCache())
        assert rows[name].status == "done", rows[name].error
    assert "non-finite" in rows["streamed"].note and "non-finite" in rows["whole"].note
    for whole_path, streamed_path in zip(rows["whole"].outputs, rows["streamed"].outputs):
        a, b = read_image(whole_path).data, read_image(streamed_path).data
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4, equal_nan=True)
        assert np.isnan(b[0, 0, 7, 9]) and np.isnan(b).sum() == 1


def test_a_time_series_streams_one_plane_at_a_time_and_equals_run(tmp_path, rng):
    engine = PredictionEngine(make_unet_package(tmp_path), device="cpu")
    pixels = (rng.normal(size=(5, 1, 1, 90, 80)) * 50 + 500).astype(np.float32)
    reads: list[int] = []
    guarded = GuardedArray(pixels, limit=90 * 80, reads=reads)  # more than one plane at once raises
    image = Image(data=guarded, axes="TCZYX", channel_names=("BF",))  # type: ignore[arg-type]
    streamed, _ = _prediction_of(engine, image, PredictSettings(tile_shape=(64, 64)), tmp_path, "series")
    whole = engine.predict(Image(data=pixels, axes="TCZYX", channel_names=("BF",)), PredictSettings(tile_shape=(64, 64)))
    assert streamed.shape == whole.prediction.shape == (5, 1, 1, 90, 80)
    np.testing.assert_allclose(streamed, whole.prediction, rtol=1e-4, atol=1e-4)
    assert sum(reads) <= 2 * pixels.size  # the statistics read and the prediction read, nothing more


class ChunkedRows(GuardedArray):
    """A lazy-looking (C, Y, X) array stored in row chunks; records the rows each read covers."""

    chunk_rows = 32
    chunks = property(lambda self: ((self._array.shape[0],),
                                    (self.chunk_rows,) * -(-self._array.shape[1] // self.chunk_rows),
                                    (self._array.shape[2],)))

    def __getitem__(self, key: Any) -> ChunkedRows:
        view = type(self)(self._array[key], self.limit, self.reads)
        view.chunk_rows = self.chunk_rows
        return view


def _streamed_equals_tiled(image: np.ndarray, source: Any) -> None:
    grid = TileGrid.create(image.shape[1:], 48, 16, multiple_of=8, margin=4)  # tile rows overlap by 16 rows
    streamed, _, _ = _stream(source, grid, fit_normalizer(image))
    gen = iter_predict_tiled(fit_normalizer(image).apply(image), box_predict, tile_shape=48, overlap=16,
                             multiple_of=8, margin=4)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        np.testing.assert_allclose(streamed, stop.value, rtol=1e-5, atol=1e-5)


def test_band_reads_take_each_row_once(rng):
    image = rng.normal(size=(1, 300, 70)).astype(np.float32)
    source = ChunkedRows(image, limit=10**9)  # 32-row chunks, 48-row bands: a cut chunk is decoded again
    _streamed_equals_tiled(image, source)
    assert sum(source.reads) == image.size  # overlapping tile rows reuse the rows already read
    assert max(source.reads) <= 48 * 70  # never more than a band at once


def test_chunks_many_bands_tall_are_read_whole_once(rng):
    image = rng.normal(size=(1, 300, 70)).astype(np.float32)
    source = ChunkedRows(image, limit=10**9)
    source.chunk_rows = 256  # more than REDECODE_MAX_RATIO bands of 48 rows: one strip for most of the image
    _streamed_equals_tiled(image, source)
    assert source.reads == [256 * 70, 44 * 70]  # each chunk read whole, once


class ChunkedTiles(ChunkedRows):
    """A lazy-looking (C, Y, X) array stored in 32×16 chunks (a tiled TIFF's layout)."""

    chunks = property(lambda self: ((self._array.shape[0],), (32,) * -(-self._array.shape[1] // 32),
                                    (16,) * -(-self._array.shape[2] // 16)))


def test_the_band_buffer_is_allocated_once_and_holds_one_band(rng, monkeypatch):
    from labelfree_app.core import streaming

    monkeypatch.setattr(streaming, "READ_BLOCK_BYTES", 32 * 48 * 4)  # about three 32×16 float32 chunks per read
    image = rng.normal(size=(1, 300, 70)).astype(np.float32)
    source = ChunkedTiles(image, limit=32 * 48)  # a read of more than that raises
    reader = streaming._RowReader(source, 48)
    buffers = set()
    for lo in range(0, 300 - 48 + 1, 32):
        rows = reader.rows(lo, lo + 48)
        np.testing.assert_array_equal(rows, image[:, lo:lo + 48])
        assert reader.buffer is not None and np.shares_memory(rows, reader.buffer)
        buffers.add(id(reader.buffer))
    assert len(buffers) == 1 and reader.buffer.shape[1] == 48  # one band of rows, no read-ahead
    assert sum(source.reads) == image[:, :reader.hi].size  # every row read once


def test_every_tile_reaches_the_network_in_one_shape(rng):
    """Edge tiles are reflect-padded to the full tile, so the runner (ONNX Runtime) sees one input shape."""
    image = rng.normal(size=(1, 173, 251)).astype(np.float32)
    grid = TileGrid.create((173, 251), (64, 96), (16, 16), multiple_of=8, margin=4)
    shapes: set[tuple[int, ...]] = set()

    def predict(batch: np.ndarray) -> np.ndarray:
        shapes.add(batch.shape)
        return box_predict(batch)

    emit = lambda *args: None  # noqa: E731
    steps = stream_plane(image, predict, grid, fit_normalizer(image), emit, batch_size=1)
    for _ in steps:
        pass
    assert grid.n_tiles > 4 and shapes == {(1, 1, 64, 96)}


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint8])
@pytest.mark.parametrize("method", ["zscore", "percentile", "minmax"])
def test_integer_samples_give_the_float64_statistics(dtype, method, rng):
    image = rng.gamma(2.0, 40.0, size=(1, 300, 257)).astype(dtype)
    fitted = fit_streaming(ChunkedRows(image, limit=10**9), Normalizer.unfitted(method), sample_limit=20_000)
    step = 2  # ceil(sqrt(300 * 257 / 20_000)): every other row and column
    sample = image[:, ::step, ::step].astype(np.float64).reshape(-1)
    expected = {"zscore": {"mean": sample.mean(), "std": sample.std()},
                "minmax": {"low_value": sample.min(), "high_value": sample.max()},
                "percentile": dict(zip(("low_value", "high_value"),
                                       np.percentile(sample, Normalizer.unfitted(method).percentiles)))}[method]
    for key, value in expected.items():
        assert fitted.params[key] == pytest.approx(value, rel=1e-12)
