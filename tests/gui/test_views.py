"""Panels: linked pan/zoom, crosshair values, auto-contrast, variance colormap, overlay, layout."""

from __future__ import annotations

import numpy as np
import pytest

from labelfree_app.gui.viewer.image_panel import HIGH_PERCENTILE, LOW_PERCENTILE, ImagePanel, auto_levels, plane_of
from labelfree_app.gui.viewer.panel_grid import PanelGrid, overlay_rgb
from tests.gui.helpers import drop_files, run_and_wait, wait_loaded


@pytest.fixture
def grid(qtbot) -> PanelGrid:
    widget = PanelGrid()
    qtbot.addWidget(widget)
    widget.resize(1200, 500)
    widget.show()
    return widget


def test_auto_levels_are_the_0_02_and_99_8_percentiles():
    plane = np.arange(10_000, dtype=np.float32).reshape(100, 100)
    low, high = auto_levels(plane)
    assert low == pytest.approx(np.percentile(plane, LOW_PERCENTILE))
    assert high == pytest.approx(np.percentile(plane, HIGH_PERCENTILE))
    assert auto_levels(np.full((4, 4), 3.0)) == (3.0, 4.0)  # flat images still get a range
    assert auto_levels(np.full((4, 4), np.nan)) == (0.0, 1.0)


def test_plane_of_picks_a_clamped_plane_or_the_max_projection():
    volume = np.arange(24, dtype=np.float32).reshape(3, 2, 4)
    np.testing.assert_array_equal(plane_of(volume, 1, False), volume[1])
    np.testing.assert_array_equal(plane_of(volume, 9, False), volume[2])
    np.testing.assert_array_equal(plane_of(volume, 0, True), volume.max(axis=0))


def test_pan_and_zoom_are_linked_across_the_four_panels(qtbot, grid):
    rng = np.random.default_rng(0)
    grid.set_input(rng.random((1, 64, 64), dtype=np.float32))
    grid.set_result(rng.random((1, 1, 64, 64), dtype=np.float32), rng.random((1, 1, 64, 64), dtype=np.float32),
                    None, is_diffusion=True)
    grid.input_panel.view_box.setRange(xRange=(10, 20), yRange=(30, 40), padding=0)
    qtbot.wait(10)
    for panel in grid.panels[1:]:
        x_range, y_range = panel.view_box.viewRange()
        assert x_range == pytest.approx([10, 20], abs=0.5)
        # The aspect lock may widen the y range to fit the panel, around the same centre.
        assert sum(y_range) / 2 == pytest.approx(35, abs=0.5) and y_range[1] - y_range[0] < 15
    grid.variance_panel.view_box.setRange(xRange=(0, 8), yRange=(0, 8), padding=0)
    assert grid.input_panel.view_box.viewRange()[0] == pytest.approx([0, 8], abs=0.5)


def test_the_crosshair_reports_every_panels_value_at_that_pixel(qtbot, grid):
    base = np.arange(32 * 32, dtype=np.float32).reshape(1, 32, 32)
    grid.set_input(base)
    grid.set_result(base[np.newaxis] * 2, base[np.newaxis] / 4, None, is_diffusion=False)
    reported: list[str] = []
    grid.hoverText.connect(reported.append)
    text = grid.probe(5.7, 3.2)  # column 5, row 3
    value = float(base[0, 3, 5])
    assert reported == [text]
    assert f"Input {value:.0f}" in text  # 101, a whole count
    assert f"Prediction {value * 2:.0f}" in text
    assert f"Variance std ±{(value / 4) ** 0.5:.4g}" in text  # a variance is read as its std, in stain units
    assert "Denoising –" in text  # a U-Net result has nothing there
    for panel in grid.panels:
        assert panel.v_line.isVisible() and panel.v_line.value() == 5.5
        assert panel.h_line.value() == 3.5
    assert grid.probe(-3, 2) == "" and not grid.input_panel.v_line.isVisible()


def test_each_panel_keeps_its_own_contrast_and_the_variance_uses_a_colormap(qtbot, grid):
    rng = np.random.default_rng(2)
    grid.set_input(rng.random((1, 50, 50), dtype=np.float32))
    grid.set_result(rng.random((1, 1, 50, 50), dtype=np.float32) * 100, rng.random((1, 1, 50, 50), dtype=np.float32),
                    None, is_diffusion=True)
    assert grid.input_panel.levels[1] <= 1.0
    assert grid.prediction_panel.levels[1] > 50
    # The user drags the prediction's histogram; a z change keeps that contrast.
    grid.prediction_panel.histogram.setLevels(10.0, 20.0)
    assert grid.prediction_panel.levels == (10.0, 20.0)
    grid.set_z(0)
    assert tuple(grid.prediction_panel.image_item.levels) == (10.0, 20.0)
    grid.prediction_panel.auto_contrast()
    assert grid.prediction_panel.levels == pytest.approx(auto_levels(grid.prediction_panel.plane))
    lut = grid.variance_panel.histogram.gradient.getLookupTable(8)
    assert not np.all(lut[:, 0] == lut[:, 1])  # coloured, not grey


def test_overlay_shows_the_prediction_in_colour_over_the_input_and_toggles_back(qtbot, grid):
    base = np.zeros((1, 20, 20), np.float32)
    base[0, :, :10] = 1.0  # left half bright in the input
    prediction = np.zeros((1, 1, 20, 20), np.float32)
    prediction[0, 0, :10, :] = 1.0  # top half bright in the prediction
    grid.set_input(base)
    grid.set_result(prediction, None, None, is_diffusion=False)
    grid.overlay_box.setChecked(True)
    assert grid.overlay_active
    assert grid.prediction_panel.shows_rgb
    rgb = grid.prediction_panel.rgb_item.image
    assert rgb.shape == (20, 20, 3)
    assert rgb[15, 15].tolist() == pytest.approx([0, 0, 0])  # dark in both
    assert rgb[15, 5, 0] == pytest.approx(rgb[15, 5, 1]) and rgb[15, 5, 0] > 0.5  # grey input only
    assert rgb[5, 15, 1] > 0.9 and rgb[5, 15, 0] < 0.2  # green prediction only
    # The prediction's histogram still sets its levels under the overlay.
    grid.prediction_panel.histogram.setLevels(0.0, 4.0)
    assert grid.prediction_panel.rgb_item.image[5, 15, 1] == pytest.approx(0.25, abs=0.02)
    grid.overlay_box.setChecked(False)
    assert not grid.prediction_panel.shows_rgb
    assert grid.prediction_panel.image_item.image.shape == (20, 20)
    np.testing.assert_array_equal(grid.prediction_panel.plane, prediction[0, 0])


def test_overlay_rgb_scales_each_layer_by_its_levels():
    rgb = overlay_rgb(np.array([[0.0, 10.0]]), (0, 10), np.array([[2.0, 0.0]]), (0, 2))
    assert rgb.shape == (1, 2, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert rgb[0, 1].tolist() == pytest.approx([0.8, 0.8, 0.8])


def test_layout_is_a_row_or_a_grid_whichever_shows_pixels_larger(qtbot, grid):
    grid.set_input(np.zeros((1, 100, 100), np.float32))
    grid.resize(2000, 500)
    qtbot.wait(10)
    assert grid._current_columns == 4
    grid.resize(900, 900)
    qtbot.wait(10)
    assert grid._current_columns == 2
    grid.arrange(4)
    assert grid._current_columns == 4


def test_messages_explain_empty_panels(qtbot):
    panel = ImagePanel("Variance")
    qtbot.addWidget(panel)
    panel.clear("no uncertainty for this model")
    assert panel.message == "no uncertainty for this model"
    panel.set_plane(np.ones((4, 4), np.float32))
    assert panel.message == ""


def test_the_window_overlay_action_is_one_click_away(qtbot, window, tiff_2d):
    drop_files(window, [tiff_2d])
    wait_loaded(qtbot, window)
    run_and_wait(qtbot, window)
    toolbar_actions = window.findChild(type(window.addToolBar("x")), "main_toolbar").actions()
    assert window.menus.overlay_action in toolbar_actions
    window.menus.overlay_action.trigger()
    assert window.panels.overlay_active and window.panels.overlay_box.isChecked()
