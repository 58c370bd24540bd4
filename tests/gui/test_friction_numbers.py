"""Issue 28 item 16: numbers a person can read; the variance file says it is one; no crosshair in the PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labelfree_app.cli.main import main
from labelfree_app.gui.viewer.panel_grid import PanelGrid
from labelfree_app.gui.viewer.values import format_value, format_variance
from labelfree_app.io import read_image
from labelfree_app.paths import demo_image
from tests.factories import make_unet_package


@pytest.fixture
def grid(qtbot) -> PanelGrid:
    widget = PanelGrid()
    qtbot.addWidget(widget)
    widget.resize(900, 400)
    widget.show()
    return widget


def test_sixteen_bit_counts_read_as_whole_numbers_and_stain_units_without_exponents():
    assert format_value(33020.0) == "33020"
    assert format_value(15880.418) == "15880"
    assert format_value(12.3456) == "12.35" and format_value(0.031234) == "0.0312"
    assert "e+" not in format_value(65535.0) and format_value(None) == "–"


def test_the_crosshair_reads_counts_and_a_variance_as_its_std_in_stain_units(qtbot, grid):
    counts = np.full((1, 16, 16), 33020, dtype=np.uint16)
    grid.set_input(counts)
    variance = np.full((1, 1, 16, 16), 6.0e7, dtype=np.float32)
    grid.set_result(counts[np.newaxis].astype(np.float32), variance, None, is_diffusion=True)
    text = grid.probe(3.5, 3.5)
    assert "Input 33020" in text and "e+" not in text
    assert "Variance std ±7746" in text and format_variance(6.0e7) == "std ±7746"


def test_the_exported_panels_png_has_no_crosshair_and_the_window_keeps_it(qtbot, grid):
    grid.set_input(np.zeros((1, 32, 32), dtype=np.float32))
    grid.probe(10.5, 10.5)
    lines = [line for panel in grid.panels for line in (panel.v_line, panel.h_line)]
    assert all(line.isVisible() for line in lines)
    with_cross = grid.grab().toImage()
    clean = grid.grab_without_crosshair()
    assert all(line.isVisible() for line in lines)  # the window still shows it
    for line in lines:
        line.setVisible(False)
    assert clean == grid.grab().toImage() and clean != with_cross


def test_the_variance_file_names_its_channel_as_a_variance_not_as_the_prediction(tmp_path):
    package = make_unet_package(tmp_path / "models", output={"axes": "CYX", "channels": 1, "channel_names": ["DNA"]})
    out = tmp_path / "out"
    assert main(["predict", str(demo_image()), "-o", str(out), "--model", str(package.path), "--tta", "-q"]) == 0
    prediction = read_image(next(out.glob("*__test-unet.ome.tif")))
    variance = read_image(next(out.glob("*__variance.ome.tif")))
    assert prediction.channel_names == ("DNA",) and variance.channel_names == ("DNA (variance)",)
    assert not set(variance.channel_names) & set(prediction.channel_names)
