"""Overviews of huge planes: block means read band by band, and full-resolution regions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from labelfree_app.io import read_image, regions
from labelfree_app.io.overview import (band_rows, block_mean, build_overview, clamp_region, overview_factor,
                                       read_region)


def reference_block_mean(plane: np.ndarray, factor: int) -> np.ndarray:
    """Block means written the slow, obvious way (partial edge blocks: mean of what they hold)."""
    rows, cols = -(-plane.shape[0] // factor), -(-plane.shape[1] // factor)
    out = np.empty((rows, cols), dtype=np.float64)
    for i in range(rows):
        for j in range(cols):
            block = plane[i * factor:(i + 1) * factor, j * factor:(j + 1) * factor].astype(np.float64)
            finite = block[np.isfinite(block)]
            out[i, j] = finite.mean() if finite.size else np.nan
    return out


@pytest.fixture
def tiled_tiff(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 2-plane 300×500 uint16 tiled TIFF (64² tiles): neither side a multiple of a tile or a block."""
    rng = np.random.default_rng(3)
    data = rng.integers(0, 60000, size=(2, 300, 500), dtype=np.uint16)
    path = tmp_path / "tiled.tif"
    tifffile.imwrite(path, data, tile=(64, 64), metadata={"axes": "ZYX"})
    return path, data


@pytest.fixture
def lazy_volume(tiled_tiff, monkeypatch):
    monkeypatch.setattr(regions, "LAZY_MIN_BYTES", 0)  # open even this small file lazily
    image = read_image(tiled_tiff[0], lazy=True)
    assert not isinstance(image.data, np.ndarray)
    return image.data[0]  # (Z, Y, X), still lazy


class RecordingVolume:
    """Wraps a lazy (Z, Y, X) array and records the shape of every region converted to pixels."""

    def __init__(self, volume) -> None:
        self.volume, self.reads = volume, []
        self.shape, self.chunks, self.dtype = volume.shape, getattr(volume, "chunks", None), volume.dtype

    def __getitem__(self, key) -> np.ndarray:
        pixels = np.asarray(self.volume[key])
        self.reads.append(pixels.shape)
        return pixels


def test_the_overview_of_a_tiled_tiff_is_the_block_mean_of_its_pixels(tiled_tiff, lazy_volume):
    _, data = tiled_tiff
    overview = build_overview(lazy_volume, factor=8)
    assert overview.factor == 8 and overview.full_shape == (2, 300, 500)
    assert overview.pixels.shape == (2, 38, 63)
    for z in range(2):
        np.testing.assert_allclose(overview.pixels[z], reference_block_mean(data[z], 8), rtol=1e-6)


def test_block_means_leave_out_non_finite_pixels():
    plane = np.arange(7 * 10, dtype=np.float32).reshape(7, 10)
    plane[0, 0] = np.nan
    plane[6, 9] = np.inf  # the only pixel of the bottom-right block
    np.testing.assert_allclose(block_mean(plane, 3), reference_block_mean(plane, 3), rtol=1e-6)
    assert np.isnan(block_mean(plane, 3)[2, 3])


@pytest.mark.parametrize("factor", [8, 5])
def test_the_overview_is_read_in_tile_aligned_bands_never_the_whole_plane(tiled_tiff, lazy_volume, factor):
    budget = 100 * 500 * 4  # room for 100 rows of float32: bands of one row of 64² tiles
    recording = RecordingVolume(lazy_volume)
    overview = build_overview(recording, factor=factor, budget_bytes=budget)
    assert band_rows(recording, factor, budget) == 64
    assert len(recording.reads) == 2 * 5  # 300 rows in bands of 64, for each plane
    assert all(rows <= 64 and cols == 500 for rows, cols in recording.reads)
    assert sum(rows for rows, _ in recording.reads) == 2 * 300  # every row read once
    # a block of 5 rows that straddles two bands is still the mean of its own pixels
    np.testing.assert_allclose(overview.pixels[1], reference_block_mean(tiled_tiff[1][1], factor), rtol=1e-6)


def test_the_overview_reports_its_progress_band_by_band(tiled_tiff, lazy_volume):
    told: list[tuple[int, int]] = []
    build_overview(lazy_volume, factor=8, budget_bytes=100 * 500 * 4, progress=lambda *step: told.append(step))
    assert told == [(done, 10) for done in range(1, 11)]  # 5 bands of 64 rows in each of 2 planes


def test_the_overview_factor_keeps_the_longest_side_and_the_total_within_bounds():
    assert overview_factor((1, 20000, 20000), 4096) == 5
    assert overview_factor((1, 30000, 1000), 4096) == 8
    assert overview_factor((1, 1000, 1000), 4096) == 1
    factor = overview_factor((13, 20000, 20000), 4096)
    assert 13 * (-(-20000 // factor)) ** 2 <= 4096 ** 2 < 13 * (-(-20000 // (factor - 1))) ** 2


def test_a_region_is_read_at_full_resolution_and_clamped_to_the_image(tiled_tiff, lazy_volume):
    _, data = tiled_tiff
    np.testing.assert_array_equal(read_region(lazy_volume, 37, 101, 250, 333), data[:, 37:101, 250:333])
    np.testing.assert_array_equal(read_region(lazy_volume, -5, 20, 480, 900), data[:, 0:20, 480:500])
    assert read_region(lazy_volume, 37, 101, 250, 333).dtype == np.float32
    assert clamp_region((300, 500), 10.6, 20.2, -3, 40.0) == (10, 21, 0, 40)
    assert clamp_region((300, 500), 400, 500, 10, 5) == (300, 300, 10, 10)
