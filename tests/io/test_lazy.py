"""io.lazy.LazyArray: a view composed of indexing and transposes reads exactly what numpy would."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from labelfree_app.errors import CorruptImageError
from labelfree_app.io import read_image
from labelfree_app.io.lazy import LazyArray


class CountingBase:
    """A numpy array as a base that records the keys it is read with."""

    def __init__(self, array: np.ndarray, chunks: tuple[int, ...] | None = None) -> None:
        self.array, self.shape, self.dtype = array, array.shape, array.dtype
        self.chunks = chunks
        self.reads: list[tuple] = []

    def __getitem__(self, key: tuple) -> np.ndarray:
        self.reads.append(key)
        return self.array[key].copy()


def random_key(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple:
    key: list = []
    for n in shape:
        choice = rng.integers(0, 4)
        if choice == 0 and n:
            key.append(int(rng.integers(-n, n)))
        elif choice == 1:
            a, b = sorted(int(v) for v in rng.integers(-n - 2, n + 3, 2))
            key.append(slice(a, b, int(rng.integers(1, 4))))
        elif choice == 2:
            key.append(slice(None))
        else:
            key.append(slice(int(rng.integers(0, n + 1)), None))
        if rng.random() < 0.15:
            key.append(None)
    return tuple(key)


def test_composed_views_read_what_numpy_reads() -> None:
    rng = np.random.default_rng(3)
    array = rng.integers(0, 60000, (3, 4, 17, 23), dtype=np.uint16)
    for _ in range(300):
        lazy, expected = LazyArray(CountingBase(array), Path("x.tif")), array
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.3 and expected.ndim > 1:
                order = tuple(int(i) for i in rng.permutation(expected.ndim))
                lazy, expected = lazy.transpose(order), expected.transpose(order)
            else:
                key = random_key(rng, expected.shape)
                lazy, expected = lazy[key], expected[key]
            assert lazy.shape == expected.shape
        got = np.asarray(lazy)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
        assert got.flags.c_contiguous


def test_reading_a_region_reads_only_that_region_once() -> None:
    base = CountingBase(np.arange(2 * 100 * 80, dtype=np.float32).reshape(2, 100, 80))
    view = LazyArray(base, Path("x.tif"))[1][10:30, ::4].transpose(1, 0)
    assert base.reads == []  # indexing and transposing read nothing
    out = np.asarray(view)
    assert base.reads == [(1, slice(10, 30, 1), slice(0, 80, 4))]
    np.testing.assert_array_equal(out, base.array[1, 10:30, ::4].T)


def test_ellipsis_negative_index_and_bounds() -> None:
    array = np.arange(60).reshape(3, 4, 5)
    lazy = LazyArray(CountingBase(array), Path("x.tif"))
    np.testing.assert_array_equal(np.asarray(lazy[..., -1]), array[..., -1])
    np.testing.assert_array_equal(np.asarray(lazy[-1, ...]), array[-1, ...])
    assert len(lazy) == 3 and lazy.ndim == 3 and lazy.nbytes == array.nbytes
    with pytest.raises(IndexError):
        lazy[3]
    with pytest.raises(IndexError):
        lazy[0, 0, 0, 0]
    with pytest.raises(IndexError, match="backwards"):
        lazy[::-1]
    with pytest.raises(TypeError):
        lazy[[0, 1]]


def test_chunks_follow_the_stored_chunks_of_the_view() -> None:
    lazy = LazyArray(CountingBase(np.zeros((2, 100, 80)), chunks=(1, 32, 80)), Path("x.tif"))
    assert lazy.chunks == ((1, 1), (32, 32, 32, 4), (80,))
    assert lazy[:, 10:70].chunks == ((1, 1), (22, 32, 6), (80,))
    assert lazy[0, 40:].transpose(1, 0)[:, None].chunks == ((80,), (1,), (24, 32, 4))


def test_a_read_failure_is_one_sentence(tmp_path: Path) -> None:
    class Broken(CountingBase):
        def __getitem__(self, key: tuple) -> np.ndarray:
            raise ValueError("bad codec")

    lazy = LazyArray(Broken(np.zeros((4, 4))), tmp_path / "scan.tif")
    with pytest.raises(CorruptImageError, match=r"scan.tif has a damaged or missing chunk .*copy or export the file again"):
        np.asarray(lazy[1:3])


def test_a_big_tiled_tiff_opens_lazily_without_dask_or_zarr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("labelfree_app.io.regions.LAZY_MIN_BYTES", 1024)
    pixels = np.random.default_rng(0).integers(0, 4000, (3, 300, 260), dtype=np.uint16)
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(path, pixels, tile=(64, 64), bigtiff=True, ome=True, metadata={"axes": "ZYX"},
                     compression="zlib")
    modules_before = {name for name in sys.modules if name.startswith(("dask", "zarr"))}
    image = read_image(path, lazy=True)
    assert isinstance(image.data, LazyArray)
    assert image.data.chunks[-2][0] == 64 and image.data.chunks[-1][0] == 64
    np.testing.assert_array_equal(np.asarray(image.data[0, 1, 100:200, 7:250]), pixels[1, 100:200, 7:250])
    np.testing.assert_array_equal(np.asarray(image.data[0, :, ::5, ::3]), pixels[:, ::5, ::3])
    assert {name for name in sys.modules if name.startswith(("dask", "zarr"))} == modules_before


LAYOUTS = {
    "tiles": dict(tile=(64, 32)),
    "zlib strips": dict(rowsperstrip=7, compression="zlib"),
    "lzw tiles with predictor": dict(tile=(32, 48), compression="lzw", predictor=True),
    "one zlib strip": dict(rowsperstrip=1000, compression="zlib"),
    "big-endian zlib tiles": dict(tile=(64, 64), byteorder=">", compression="zlib"),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_tiff_segments_read_regions_as_tifffile_does(tmp_path: Path, layout: str) -> None:
    from labelfree_app.io.regions import TiffSegments

    pixels = np.random.default_rng(1).integers(0, 60000, (3, 301, 257), dtype=np.uint16)
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, pixels, photometric="minisblack", **LAYOUTS[layout])
    with tifffile.TiffFile(path) as tif:
        assert TiffSegments.handles(tif.series[0])
        reader = TiffSegments(tif.series[0], path)
    # the file is closed: every read opens it again
    for key in [(slice(None),), (1, slice(10, 200, 3), slice(5, 250, 7)), (slice(0, 3, 2), slice(300, 301)),
                (2,), (0, 5, slice(None, None, 100))]:
        np.testing.assert_array_equal(reader[key], pixels[key])


def test_empty_tiles_read_as_zero(tmp_path: Path) -> None:
    from labelfree_app.io.regions import TiffSegments

    pixels = np.full((2, 100, 100), 7, np.uint16)
    path = tmp_path / "sparse.tif"
    tifffile.imwrite(path, pixels, tile=(32, 32), photometric="minisblack")
    with tifffile.TiffFile(path, mode="r+b") as tif:  # the second page's tiles become empty (never written)
        counts = tif.pages[1].tags["TileByteCounts"]
        counts.overwrite([0] * len(counts.value))
    with tifffile.TiffFile(path) as tif:
        reader = TiffSegments(tif.series[0], path)
    np.testing.assert_array_equal(reader[:, 20:90], np.stack([pixels[0, 20:90], np.zeros((70, 100), np.uint16)]))


def test_a_damaged_tile_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("labelfree_app.io.regions.LAZY_MIN_BYTES", 1024)
    pixels = np.random.default_rng(2).integers(0, 4000, (200, 200), dtype=np.uint16)
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, pixels, tile=(64, 64), compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].dataoffsets[5]
    with open(path, "r+b") as handle:  # garble the zlib stream of tile 5
        handle.seek(offset)
        handle.write(b"\xff" * 16)
    image = read_image(path, lazy=True)
    np.testing.assert_array_equal(np.asarray(image.data[0, 0, :64]), pixels[:64])  # tiles 0-3 are fine
    with pytest.raises(CorruptImageError, match="damaged or missing chunk"):
        np.asarray(image.data[0, 0, 64:128])


def test_lazy_tiff_reads_need_no_pread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows has no ``os.pread``: the lazy readers seek and read on a handle of their own."""
    import os

    monkeypatch.delattr(os, "pread", raising=False)
    monkeypatch.setattr("labelfree_app.io.regions.LAZY_MIN_BYTES", 1024)
    pixels = np.random.default_rng(4).integers(0, 4000, (2, 150, 130), dtype=np.uint16)
    for name, options in (("contiguous.tif", {}), ("tiled.tif", {"tile": (32, 32), "compression": "zlib"})):
        path = tmp_path / name
        tifffile.imwrite(path, pixels, photometric="minisblack", **options)
        image = read_image(path, lazy=True)
        assert isinstance(image.data, LazyArray)
        np.testing.assert_array_equal(np.asarray(image.data[0, 1, 20:140:3, 5:]), pixels[1, 20:140:3, 5:])


def test_read_at_returns_what_is_there_at_the_end_of_a_file(tmp_path: Path) -> None:
    from labelfree_app.io.regions import read_at

    path = tmp_path / "bytes.bin"
    path.write_bytes(bytes(range(100)))
    with open(path, "rb", buffering=0) as handle:
        assert bytes(read_at(handle, 10, 5)) == bytes(range(10, 15))
        assert bytes(read_at(handle, 95, 20)) == bytes(range(95, 100))  # short: the file ends
