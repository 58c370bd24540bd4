"""Huge images in the window: an overview at full-resolution coordinates, the visible region at full
resolution once zoomed in (read off the GUI thread), and Run with a diffusion model refused with a sentence."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile

from labelfree_app.errors import ImageTooLargeError
from labelfree_app.gui.backend import CoreBackend
from labelfree_app.gui.viewer import large_image
from labelfree_app.gui.viewer.values import format_value
from labelfree_app.io import overview as overview_module
from labelfree_app.io import regions

HEIGHT, WIDTH, FACTOR = 600, 800, 8


@pytest.fixture
def big_tiff(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A tiled uint16 plane that the tests' thresholds call huge (the real one is 64 M pixels)."""
    rng = np.random.default_rng(5)
    data = rng.integers(0, 4000, size=(HEIGHT, WIDTH), dtype=np.uint16)
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, data, tile=(64, 64))
    return path, data


@pytest.fixture
def small_thresholds(monkeypatch) -> CoreBackend:
    """Real lazy reading with thresholds that make a 600×800 plane huge (overview 1:8, 100×100)."""
    monkeypatch.setattr(regions, "LAZY_MIN_BYTES", 0)
    monkeypatch.setattr(overview_module, "OVERVIEW_MAX_SIDE", 100)
    return CoreBackend(large_plane_pixels=100_000)


@pytest.fixture
def big_window(window, small_thresholds, monkeypatch):
    window.backend.large_plane_pixels = small_thresholds.large_plane_pixels
    monkeypatch.setattr(window.backend, "read_image", small_thresholds.read_image)
    window.input_view.region_max_pixels = 40_000  # a 200×200 view or smaller is read at full resolution
    return window


def test_the_backend_keeps_a_huge_image_lazy_and_reads_small_ones_whole(big_tiff, small_thresholds):
    path, data = big_tiff
    image = small_thresholds.read_image(path)
    assert not isinstance(image.data, np.ndarray) and image.data.shape == (1, 1, HEIGHT, WIDTH)
    whole = CoreBackend().read_image(path)  # under the real threshold: pixels in memory, as before
    assert isinstance(whole.data, np.ndarray)
    np.testing.assert_array_equal(whole.data[0, 0], data)


def test_the_backends_whole_image_run_refuses_a_huge_image(big_tiff, small_thresholds):
    image = small_thresholds.read_image(big_tiff[0])  # predict_to_file streams it (tests/gui/test_large_run.py)
    with pytest.raises(ImageTooLargeError, match="choose a 2D U-Net model"):
        next(small_thresholds.run(image, "any-model", {}))


def test_a_huge_image_opens_as_an_overview_in_full_resolution_coordinates(qtbot, big_window, big_tiff):
    path, data = big_tiff
    told: list[tuple[int, int, int]] = []
    big_window.input_view.building.connect(lambda *step: told.append(step))
    with qtbot.waitSignal(big_window.input_view.overviewShown, timeout=10000):
        big_window.open_paths([path])
    panel = big_window.panels.input_panel
    assert told and told[-1][1] == told[-1][2]  # the build's progress reached the window, to the last band
    assert panel.plane.shape == (HEIGHT // FACTOR, WIDTH // FACTOR) and panel.scale == FACTOR
    assert "overview 1:8, zoom in for full res." in panel.title_label.text
    bounds = panel.image_item.mapRectToParent(panel.image_item.boundingRect())
    assert (bounds.width(), bounds.height()) == (WIDTH, HEIGHT)  # drawn over the full-resolution extent
    (x_lo, x_hi), _ = panel.view_box.viewRange()
    assert x_hi - x_lo >= WIDTH * 0.99  # the axes read full-resolution pixels
    text = big_window.panels.probe(405.5, 203.2)  # full-resolution column 405, row 203
    block = data[200:208, 400:408].astype(np.float64).mean()
    assert "x 405  y 203" in text and f"Input {format_value(block)}" in text
    assert panel.detail is None


def test_zooming_in_reads_the_visible_region_at_full_resolution_off_the_gui_thread(
        qtbot, big_window, big_tiff, monkeypatch):
    path, data = big_tiff
    threads: list[threading.Thread] = []

    def recording_read(*args):
        threads.append(threading.current_thread())
        return overview_module.read_region(*args)

    monkeypatch.setattr(large_image, "read_region", recording_read)
    with qtbot.waitSignal(big_window.input_view.overviewShown, timeout=10000):
        big_window.open_paths([path])
    panel = big_window.panels.input_panel
    with qtbot.waitSignal(big_window.input_view.regionLoaded, timeout=10000) as loaded:
        panel.view_box.setRange(xRange=(300, 400), yRange=(250, 350), padding=0)
    y0, y1, x0, x1 = loaded.args[0]
    assert y0 <= 250 and y1 >= 350 and x0 <= 300 and x1 >= 400
    assert threads and threading.main_thread() not in threads
    np.testing.assert_array_equal(panel.detail[0], data[y0:y1, x0:x1])
    assert panel.title_label.text.endswith("full resolution")
    text = big_window.panels.probe(333.5, 301.5)
    assert f"Input {format_value(float(data[301, 333]))}" in text  # the pixel itself, not its block's mean

    panel.view_box.autoRange(padding=0.0)  # zoom out: back to the overview
    qtbot.waitUntil(lambda: panel.detail is None, timeout=5000)
    assert "overview 1:8" in panel.title_label.text


def test_run_on_a_huge_image_with_a_diffusion_model_says_to_choose_a_unet(qtbot, big_window, big_tiff):
    with qtbot.waitSignal(big_window.input_view.overviewShown, timeout=10000):
        big_window.open_paths([big_tiff[0]])
    assert big_window.controls.current_model().kind == "diffusion"
    assert big_window.run_current() is False
    assert "choose a 2D U-Net model" in big_window.statusBar().currentMessage()
    assert big_window.backend.runs == 0 and not big_window.runner.is_running()


def test_the_window_keeps_only_the_last_few_overviews(qtbot, big_window, big_tiff, monkeypatch):
    monkeypatch.setattr(large_image, "KEPT_OVERVIEWS", 2)
    path, data = big_tiff
    copies = []
    for number in range(3):
        copy = path.with_name(f"scan{number}.tif")
        copy.write_bytes(path.read_bytes())
        copies.append(copy)
    records = []
    for copy in copies:
        with qtbot.waitSignal(big_window.input_view.overviewShown, timeout=10000):
            records.append(big_window.open_paths([copy])[0])
    held = [any(key[0] == "overview" for key in record.extra if isinstance(key, tuple)) for record in records]
    assert held == [False, True, True]  # the oldest file's overview was let go
    with qtbot.waitSignal(big_window.input_view.overviewShown, timeout=10000):
        big_window.file_list.select(records[0])  # shown again: built again, in the background
    assert records[0].extra and not any(key[0] == "overview" for key in records[1].extra if isinstance(key, tuple))
