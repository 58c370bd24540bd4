"""Run on a huge image in the window: a 2D U-Net streams it through the job `labelfree predict` runs
into a tiled OME-TIFF in the cache, shown as an overview; Cancel leaves no file; Export copies it;
diffusion and 3D models are refused with one sentence. Small thresholds keep the files small."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from labelfree_app.batch import process
from labelfree_app.cli.main import main
from labelfree_app.core.engine import PredictionEngine
from labelfree_app.errors import SettingsError
from labelfree_app.gui.backend import CoreBackend
from labelfree_app.gui.streamed_run import SavedResult, saved_results_folder
from labelfree_app.gui.viewer.panel_grid import NO_UNCERTAINTY_NOTE
from labelfree_app.io import overview as overview_module
from labelfree_app.io import read_provenance, regions
from labelfree_app.io.overview import build_overview
from labelfree_app.models.registry import ModelRegistry
from tests.factories import make_diffusion_package, make_unet_package

HEIGHT, WIDTH, FACTOR = 600, 800, 8
LARGE = 100_000  # pixels per plane above which the tests call a plane huge


@pytest.fixture
def scan(tmp_path: Path) -> Path:
    """A tiled uint16 plane with some structure, huge by the tests' thresholds."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    rng = np.random.default_rng(3)
    data = (1000 + 800 * np.sin(x / 23.0) * np.cos(y / 17.0) + rng.normal(0, 50, (HEIGHT, WIDTH))).astype(np.uint16)
    path = tmp_path / "in" / "scan.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, data, tile=(64, 64))
    return path


@pytest.fixture
def huge_window(qtbot, monkeypatch, tmp_path):
    """The real window and backend, with thresholds that make a 600×800 plane huge (and streamed)."""
    from labelfree_app.gui.main_window import MainWindow
    from labelfree_app.gui.settings import GuiSettings

    monkeypatch.setattr(regions, "LAZY_MIN_BYTES", 0)
    monkeypatch.setattr(overview_module, "OVERVIEW_MAX_SIDE", 100)
    monkeypatch.setattr(process, "STREAM_MIN_PIXELS", LARGE)  # the CLI, run in this process, streams too
    registry = ModelRegistry()
    ids = [registry.install(make_unet_package(tmp_path / "packages").path).id]
    win = MainWindow(CoreBackend(large_plane_pixels=LARGE), GuiSettings())
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: ids[0] in [m.id for m in win.models], timeout=20000)
    win.controls.choose(ids[0])  # picked before any image: it stays for the first one
    win.input_view.region_max_pixels = win.runner.saved_view.prediction.region_max_pixels = 40_000
    yield win
    if win.runner.is_running():
        win.runner.cancel()
        win.runner.wait(10000)


def _open(qtbot, window, path: Path):
    with qtbot.waitSignal(window.input_view.overviewShown, timeout=20000):
        window.open_paths([path])
    return window.file_list.current()


def _run(qtbot, window) -> str:
    with qtbot.waitSignal(window.runner.finished, timeout=120000) as finished:
        assert window.run_current() is True
    return finished.args[1]


def test_run_on_a_huge_image_streams_the_file_labelfree_predict_writes_and_shows_its_overview(
        qtbot, huge_window, scan, tmp_path, monkeypatch):
    threads: list[threading.Thread] = []
    stream = PredictionEngine.stream

    def recording_stream(self, *args, **kwargs):
        threads.append(threading.current_thread())
        return (yield from stream(self, *args, **kwargs))

    monkeypatch.setattr(PredictionEngine, "stream", recording_stream)
    record = _open(qtbot, huge_window, scan)
    progress: list[tuple[str, int, int]] = []
    show_progress = huge_window.controls.show_progress
    monkeypatch.setattr(huge_window.controls, "show_progress",
                        lambda stage, done, total, message="": (progress.append((stage, done, total)),
                                                                show_progress(stage, done, total, message)))
    assert _run(qtbot, huge_window) == "done"
    assert threads and threading.main_thread() not in threads  # streamed, on the worker thread
    assert any(stage == "tiles" for stage, _, _ in progress) and huge_window.controls.progress_bar.value() == 1000

    result = record.result
    assert isinstance(result, SavedResult) and result.variance is None
    assert result.prediction.name == "scan__test-unet.ome.tif"  # named as `labelfree predict` names it
    assert result.prediction.parent.parent == saved_results_folder(scan)  # in the cache, one folder per run
    with tifffile.TiffFile(result.prediction) as tif:
        assert tif.pages[0].is_tiled  # written band by band, not held whole
        window_pixels = tif.asarray()
    out = tmp_path / "cli"
    assert main(["predict", str(scan), "-o", str(out), "--model", "test-unet", "--device", "cpu", "-q"]) == 0
    cli_pixels = tifffile.imread(out / "scan__test-unet.ome.tif")
    assert window_pixels.dtype == cli_pixels.dtype and window_pixels.tobytes() == cli_pixels.tobytes()
    assert read_provenance(result.prediction)["model"] == read_provenance(out / "scan__test-unet.ome.tif")["model"]

    panels = huge_window.panels
    panel = panels.prediction_panel
    qtbot.waitUntil(lambda: panel.plane is not None, timeout=20000)
    expected = build_overview(cli_pixels.reshape(1, HEIGHT, WIDTH), factor=FACTOR).pixels[0]
    assert panel.scale == FACTOR and panel.full_size == (HEIGHT, WIDTH)
    np.testing.assert_allclose(panel.plane, expected, rtol=1e-6)
    assert "overview 1:8" in panel.title_label.text
    assert panels.variance_panel.message == NO_UNCERTAINTY_NOTE
    assert "predicted in" in huge_window.statusBar().currentMessage()

    view = huge_window.runner.saved_view.prediction
    with qtbot.waitSignal(view.regionLoaded, timeout=20000) as loaded:
        panels.input_panel.view_box.setRange(xRange=(300, 400), yRange=(250, 350), padding=0)  # linked views
    y0, y1, x0, x1 = loaded.args[0]
    np.testing.assert_array_equal(panel.detail[0], cli_pixels.reshape(HEIGHT, WIDTH)[y0:y1, x0:x1])
    assert panel.title_label.text.endswith("full resolution")

    assert huge_window.results.compare_current() is None  # one sentence, no comparison of whole images
    assert "too large to compare" in huge_window.statusBar().currentMessage()


def test_export_of_a_huge_result_copies_the_streamed_file(qtbot, huge_window, scan, tmp_path):
    record = _open(qtbot, huge_window, scan)
    assert _run(qtbot, huge_window) == "done"
    folder = tmp_path / "export"
    folder.mkdir()
    with qtbot.waitSignal(huge_window.exported, timeout=20000) as exported:
        assert huge_window.results.export_current(folder)
    written = [Path(p) for p in exported.args[0]]
    assert [p.name for p in written] == ["scan__test-unet.ome.tif", "scan__test-unet__panels.png"]
    assert written[0].read_bytes() == record.result.prediction.read_bytes()
    assert not list(folder.glob(".*.part"))
    huge_window.runner.discard_saved_results()  # what quitting does: the cache copy goes, the export stays
    assert not record.result.prediction.exists() and written[0].is_file()


def test_cancel_during_a_huge_run_leaves_no_file(qtbot, huge_window, scan, monkeypatch):
    load = PredictionEngine._load_runner

    def slow_runner(self):
        runner = load(self)

        class Slow:
            backend = getattr(runner, "backend", "torch")

            def predict(self, batch):
                time.sleep(0.05)
                return runner.predict(batch)

        return Slow()

    monkeypatch.setattr(PredictionEngine, "_load_runner", slow_runner)
    settings = huge_window.controls.settings
    monkeypatch.setattr(huge_window.controls, "settings", lambda: {**settings(), "tile_shape": (128, 128)})  # steps
    record = _open(qtbot, huge_window, scan)
    assert huge_window.run_current() is True
    tiles: list[int] = []
    huge_window.runner.worker.progress.connect(
        lambda event: tiles.append((event.done, event.total)) if event.stage == "tiles" else None)
    qtbot.waitUntil(lambda: bool(tiles), timeout=60000)
    with qtbot.waitSignal(huge_window.runner.finished, timeout=60000) as finished:
        huge_window.runner.cancel()
    assert finished.args[1] == "cancelled" and record.result is None
    assert tiles[-1][0] < tiles[-1][1]  # stopped mid-run, not after it
    folder = saved_results_folder(scan)
    assert not folder.exists() or not list(folder.iterdir())  # neither the output nor a temp file


@pytest.mark.parametrize("kind", ["diffusion", "3d"])
def test_run_on_a_huge_image_with_a_diffusion_or_3d_model_is_refused_in_one_sentence(qtbot, huge_window, scan,
                                                                                     tmp_path, kind):
    folder = tmp_path / "more"
    if kind == "diffusion":
        package = make_diffusion_package(folder)
    else:  # a 3D model fits only a z-stack
        package = make_unet_package(folder, dims=3, model_id="test-unet-3d")
        scan = tmp_path / "stack.tif"
        tifffile.imwrite(scan, np.zeros((8, HEIGHT, WIDTH), np.uint16), tile=(64, 64))
    model_id = ModelRegistry().install(package.path).id
    _open(qtbot, huge_window, scan)
    huge_window.refresh_models(model_id)
    qtbot.waitUntil(lambda: huge_window.controls.model_id() == model_id, timeout=20000)
    assert huge_window.run_current() is False
    message = huge_window.statusBar().currentMessage()
    assert "choose a 2D U-Net model" in message and message.count(". ") == 0  # one sentence
    assert not huge_window.runner.is_running() and not saved_results_folder(scan).exists()
    with pytest.raises(SettingsError, match="choose a 2D U-Net model"):  # the backend refuses as well
        next(huge_window.backend.predict_to_file(huge_window.file_list.current().image, model_id, {}, [scan]))


def test_a_run_folder_names_its_owner_and_a_crashed_windows_folders_are_swept(qtbot, huge_window, scan, tmp_path):
    import json
    import os
    import subprocess
    import sys

    from labelfree_app.gui.streamed_run import OWNER_FILE, RUN_PREFIX, UNOWNED_GRACE_S, sweep_stale_runs

    _open(qtbot, huge_window, scan)
    assert _run(qtbot, huge_window) == "done"
    live = huge_window.file_list.current().result.prediction.parent
    assert json.loads((live / OWNER_FILE).read_text())["pid"] == os.getpid()

    root = saved_results_folder(scan).parent
    crashed = root / "0123456789abcdef" / f"{RUN_PREFIX}crashed"  # a window that was killed mid-session
    crashed.mkdir(parents=True)
    (crashed / "big__model.ome.tif").write_bytes(b"x" * 1000)
    child = subprocess.run([sys.executable, "-c", "import os, psutil, json; print(json.dumps({'pid': os.getpid(), "
                            "'started': psutil.Process().create_time()}))"], capture_output=True, text=True, check=True)
    (crashed / OWNER_FILE).write_text(child.stdout)  # its owner has exited since
    reused = root / "0123456789abcdef" / f"{RUN_PREFIX}reused-pid"  # a live pid, but not the process that wrote it
    reused.mkdir()
    (reused / OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "started": 12.0}))
    old, recent = (root / "fedcba9876543210" / f"{RUN_PREFIX}{name}" for name in ("old", "recent"))
    for folder in (old, recent):  # folders without a note (an older version's) go after a grace period
        folder.mkdir(parents=True)
    os.utime(old, (time.time() - UNOWNED_GRACE_S - 60,) * 2)

    removed = sweep_stale_runs(root)
    assert sorted(removed) == sorted([crashed, reused, old])
    assert live.is_dir() and recent.is_dir()  # this window's run and a fresh unowned one stay
    assert not (root / "0123456789abcdef").exists()  # an input folder left empty goes too
    assert sweep_stale_runs(tmp_path / "no-cache-yet") == []


def test_a_time_series_opens_at_its_first_time_point_and_names_the_t_slider(qtbot, tmp_path):
    from labelfree_app.gui.main_window import MainWindow
    from labelfree_app.gui.settings import GuiSettings

    frames = np.stack([np.full((40, 56), 100 * (t + 1), np.uint16) for t in range(3)])
    path = tmp_path / "timelapse.ome.tif"
    tifffile.imwrite(path, frames, ome=True, metadata={"axes": "TYX"})
    model_id = ModelRegistry().install(make_unet_package(tmp_path / "packages").path).id
    win = MainWindow(CoreBackend(), GuiSettings())
    qtbot.addWidget(win)
    win.show()
    win.open_paths([path])
    qtbot.waitUntil(lambda: win.panels.input_panel.plane is not None, timeout=20000)
    assert win.panels.input_panel.title_label.text.endswith("timelapse.ome.tif (time point 1 of 3)")
    assert np.all(win.panels.input_panel.plane == 100)  # the first time point is what is shown
    message = win.statusBar().currentMessage()
    assert "3 time points" in message and "T slider" in message and "Predict all time points" in message
    qtbot.waitUntil(lambda: model_id in [m.id for m in win.models], timeout=20000)
    win.controls.choose(model_id)
    assert _run(qtbot, win) == "done"
    assert "(time point 1 of 3; Predict all time points predicts every one): predicted in" in win.statusBar().currentMessage()


def test_a_huge_result_shows_its_trust_estimate_in_the_note_without_a_map(qtbot, huge_window, scan, monkeypatch):
    from labelfree_app.core import trust_recorder
    from labelfree_app.gui.predict.trust_map import STREAMED_TIP
    from tests.factories import constant_calibration

    monkeypatch.setattr(trust_recorder, "bundled_calibration", lambda path=None: constant_calibration(0.3))
    record = _open(qtbot, huge_window, scan)
    assert _run(qtbot, huge_window) == "done"
    result = record.result
    assert isinstance(result, SavedResult) and result.trust is not None
    assert result.trust.expected_r == pytest.approx(0.3) and result.trust.level == "not trustworthy"
    assert result.trust.to_dict() == read_provenance(result.prediction)["trust"]  # the file's estimate
    note = huge_window.trust.note
    qtbot.waitUntil(note.isVisible, timeout=20000)
    assert note.level == "not trustworthy" and "Expected r 0.30 (0.20–0.40)" in note.text()
    assert STREAMED_TIP in note.toolTip() and note.improve_button.isVisible()
    assert not huge_window.trust.map_view.box.isEnabled()  # the overlay is not drawn over an overview
    assert "Not trustworthy: expected r 0.30" in huge_window.statusBar().currentMessage()
