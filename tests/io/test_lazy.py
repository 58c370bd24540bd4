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


def test_a_big_tiled_tiff_opens_lazily_without_dask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("labelfree_app.io.regions.LAZY_MIN_BYTES", 1024)
    pixels = np.random.default_rng(0).integers(0, 4000, (3, 300, 260), dtype=np.uint16)
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(path, pixels, tile=(64, 64), bigtiff=True, ome=True, metadata={"axes": "ZYX"},
                     compression="zlib")
    modules_before = {name for name in sys.modules if name.startswith("dask")}
    image = read_image(path, lazy=True)
    assert isinstance(image.data, LazyArray)
    assert image.data.chunks[-2][0] == 64 and image.data.chunks[-1][0] == 64
    np.testing.assert_array_equal(np.asarray(image.data[0, 1, 100:200, 7:250]), pixels[1, 100:200, 7:250])
    np.testing.assert_array_equal(np.asarray(image.data[0, :, ::5, ::3]), pixels[:, ::5, ::3])
    assert {name for name in sys.modules if name.startswith("dask")} == modules_before
