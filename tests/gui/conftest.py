"""GUI test setup: offscreen Qt (set before any Qt import), a fake backend, a window fixture."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

import labelfree_app.gui  # noqa: E402,F401 (applies the Qt binding work-arounds before any Qt call)

from tests.gui.fakes import FakeBackend, write_tiff  # noqa: E402


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def tiff_2d(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    return write_tiff(tmp_path / "cells_2d.tif", rng.random((1, 1, 48, 64), dtype=np.float32), ["bright-field"])


@pytest.fixture
def tiff_3d_two_channels(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    data = rng.random((2, 5, 40, 40), dtype=np.float32)
    return write_tiff(tmp_path / "stack_3d.tif", data, ["DAPI", "Brightfield"])


@pytest.fixture
def window(qtbot, backend: FakeBackend):
    from labelfree_app.gui.main_window import MainWindow
    from labelfree_app.gui.settings import GuiSettings

    win = MainWindow(backend, GuiSettings())
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.controls.model_id() is not None, timeout=3000)
    yield win
    if win.runner.is_running():
        win.runner.cancel()
        win.runner.wait(5000)
