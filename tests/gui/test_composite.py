"""Several stains in the real window: tick two models, run them, see the composite in two colours,
toggle one off, export the merged OME-TIFF (pixels identical to `predict --merge`) and the PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from labelfree_app.cli.main import main
from labelfree_app.gui.settings import GuiSettings
from labelfree_app.io import read_image, write_image
from labelfree_app.models.registry import ModelRegistry
from tests.factories import make_unet_package
from tests.gui.helpers import wait_loaded
from tests.synthetic_cells import render_cells

pytest.importorskip("torch")


@pytest.fixture
def real_window(qtbot, tmp_path: Path):
    from labelfree_app.gui.backend import CoreBackend
    from labelfree_app.gui.main_window import MainWindow

    registry = ModelRegistry()
    for model_id, seed, target in (("stain-a", 1, "DNA"), ("stain-b", 2, "Tubulin")):
        registry.install(make_unet_package(tmp_path / "packages", model_id=model_id, seed=seed, target=target).path)
    win = MainWindow(CoreBackend(), GuiSettings())
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.stains.box.list.count() >= 2, timeout=60000)
    yield win
    if win.stains.is_running():
        win.stains.worker.cancel()
        win.stains.worker.wait(5000)


@pytest.fixture
def field_file(tmp_path: Path) -> Path:
    cells = render_cells((64, 80), seed=4)
    path = tmp_path / "in" / "field.tif"
    path.parent.mkdir()
    write_image(path, cells.brightfield[None, None], "CZYX", channel_names=["Brightfield"],
                pixel_size_um={"Y": 0.5, "X": 0.5})
    return path


def _colour_mass(rgb: np.ndarray) -> np.ndarray:
    """How much green and magenta (red + blue) the composite holds."""
    return np.array([rgb[..., 1].sum(), rgb[..., 0].sum() + rgb[..., 2].sum()])


def test_two_ticked_stains_show_a_two_colour_composite_and_export_the_cli_merge_file(
        qtbot, real_window, field_file: Path, tmp_path: Path) -> None:
    win = real_window
    win.open_paths([field_file])
    wait_loaded(qtbot, win, timeout=20000)
    assert not win.stains.composite.isVisible()
    win.stains.box.tick(["stain-a", "stain-b"])
    assert win.stains.box.ticked() == ["stain-a", "stain-b"]
    with qtbot.waitSignal(win.stains.finished, timeout=120000) as blocker:
        assert win.stains.run()
    assert blocker.args == ["done"]
    composite = win.stains.composite
    qtbot.waitUntil(composite.isVisible, timeout=5000)
    assert [t.text() for t in composite.toggles] == ["DNA", "Tubulin"]
    both = composite.rgb()
    green, magenta = _colour_mass(both)
    assert green > 0 and magenta > 0  # two colours, one per stain
    composite.toggles[1].setChecked(False)  # Tubulin off: only green is left
    one = composite.rgb()
    assert not np.array_equal(one, both)
    assert np.allclose(one[..., 0], 0) and np.allclose(one[..., 2], 0) and one[..., 1].sum() > 0
    composite.toggles[1].setChecked(True)

    out = tmp_path / "export"
    out.mkdir()
    with qtbot.waitSignal(win.stains.exported, timeout=30000) as exported:
        assert win.stains.export_current(out)
    written = [Path(p) for p in exported.args[0]]
    assert [p.name for p in written] == ["field__stain-a+stain-b.ome.tif", "field__stain-a+stain-b__composite.png"]
    from PIL import Image

    picture = np.asarray(Image.open(written[1]))
    assert picture.shape == (*both.shape[:2], 3) and picture.std() > 0

    cli_dir = tmp_path / "cli"
    assert main(["predict", str(field_file), "-o", str(cli_dir), "-m", "stain-a", "-m", "stain-b", "--merge",
                 "-q"]) == 0
    cli_pixels = tifffile.imread(cli_dir / "field__stain-a+stain-b.ome.tif")
    window_pixels = tifffile.imread(written[0])
    assert window_pixels.dtype == cli_pixels.dtype
    assert window_pixels.tobytes() == cli_pixels.tobytes()
    assert list(read_image(written[0]).channel_names) == ["DNA", "Tubulin"]


def test_run_stains_needs_two_ticked_models(qtbot, real_window, field_file: Path) -> None:
    win = real_window
    win.open_paths([field_file])
    wait_loaded(qtbot, win, timeout=20000)
    win.stains.box.tick(["stain-a"])
    assert not win.stains.run()
    assert "two or more" in win.statusBar().currentMessage()
