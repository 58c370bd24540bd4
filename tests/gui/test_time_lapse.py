"""Time in the window, with the real backend: the T slider moves every panel, Predict all time points
runs the batch job one time point at a time into the cache (frames appear as they finish; Cancel keeps
the frames done and leaves nothing partial), and Export writes a TCZYX OME-TIFF plus a movie."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labelfree_app.gui.backend import CoreBackend
from labelfree_app.gui.predict import series_run
from labelfree_app.io import read_image, read_provenance, write_image
from labelfree_app.models.registry import ModelRegistry
from tests.factories import make_unet_package

FRAMES, HEIGHT, WIDTH = 6, 64, 80


@pytest.fixture
def series_path(tmp_path: Path) -> Path:
    """A 6-frame TCZYX series whose frames differ (a bright square moving right, t-dependent offset)."""
    rng = np.random.default_rng(0)
    data = np.empty((FRAMES, 1, 1, HEIGHT, WIDTH), np.float32)
    for t in range(FRAMES):
        frame = rng.normal(100 + 10 * t, 5, (HEIGHT, WIDTH))
        frame[20:40, 5 + 8 * t: 25 + 8 * t] += 200
        data[t, 0, 0] = frame
    path = tmp_path / "in" / "movie.ome.tif"
    path.parent.mkdir()
    return write_image(path, data, "TCZYX", channel_names=["bright-field"])


@pytest.fixture
def win(qtbot, tmp_path):
    from labelfree_app.gui.main_window import MainWindow
    from labelfree_app.gui.settings import GuiSettings

    model_id = ModelRegistry().install(make_unet_package(tmp_path / "packages").path).id
    window = MainWindow(CoreBackend(), GuiSettings())
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: model_id in [m.id for m in window.models], timeout=20000)
    window.controls.choose(model_id)
    yield window
    for run in (window.runner, window.time_lapse):
        run.cancel()
        run.wait(20000)


def _open(qtbot, window, path: Path):
    window.open_paths([path])
    qtbot.waitUntil(lambda: window.time_lapse.record is not None, timeout=20000)
    return window.file_list.current()


def _predict_all(qtbot, window) -> str:
    with qtbot.waitSignal(window.time_lapse.finished, timeout=120000) as finished:
        assert window.time_lapse.predict_all() is True
    return finished.args[0]


def test_the_t_slider_shows_only_for_a_series_and_moves_the_input_panel(qtbot, win, series_path):
    record = _open(qtbot, win, series_path)
    bar = win.time_lapse.bar
    assert not bar.isHidden() and bar.count == FRAMES and bar.time == 0
    expected = np.asarray(read_image(series_path).data[3, 0, 0])
    with qtbot.waitSignal(win.time_lapse.frameShown) as shown:
        bar.set_time(3)
    assert shown.args == [3] and record.extra["time_point"] == 3
    np.testing.assert_allclose(win.panels.input_panel.plane, expected)
    assert "time point 4 of 6" in win.panels.input_panel.title_label.text
    assert "not predicted yet" in win.panels.prediction_panel.message
    assert not isinstance(record.image.data, np.ndarray) or record.image.data.size  # frames read when shown


def test_predict_all_predicts_every_frame_and_the_slider_moves_every_result_panel(qtbot, win, series_path):
    record = _open(qtbot, win, series_path)
    shown: list[int] = []
    win.time_lapse.frameShown.connect(shown.append)
    assert _predict_all(qtbot, win) == "done"
    series = record.extra["series"]
    assert series.complete() and sorted(series.frames) == list(range(FRAMES))
    assert set(shown) >= set(range(FRAMES))  # each frame was shown as it landed
    assert series.run_dir.parent.parent.name == "predictions"  # in the cache, like a huge image's run
    engine = win.backend._job_engines(series.model_id, series.settings).get  # the same job predicts one frame
    for t in (1, 4):
        win.time_lapse.bar.set_time(t)
        written = np.asarray(read_image(series.frames[t].prediction).data)[0, 0]
        np.testing.assert_allclose(win.panels.prediction_panel.plane, written)
        np.testing.assert_allclose(win.panels.input_panel.plane, np.asarray(read_image(series_path).data[t, 0, 0]))
        assert read_provenance(series.frames[t].prediction)["settings"]["time_point"] == t
    assert callable(engine)
    assert not np.allclose(np.asarray(read_image(series.frames[1].prediction).data),
                           np.asarray(read_image(series.frames[4].prediction).data))
    win.time_lapse.bar.play()  # playback steps through the frames
    qtbot.waitUntil(lambda: win.time_lapse.bar.time != 4, timeout=5000)
    win.time_lapse.bar.pause()


def test_cancel_mid_way_keeps_the_frames_done_and_leaves_nothing_partial(qtbot, win, series_path, monkeypatch):
    record = _open(qtbot, win, series_path)
    real = series_run.predict_series

    def cancel_after_two(*args, **kwargs):  # cancel from the job's own thread after the second frame
        for event in real(*args, **kwargs):
            yield event
            if isinstance(event, series_run.FrameDone) and event.t == 1:
                win.time_lapse.worker.cancel()

    monkeypatch.setattr(series_run, "predict_series", cancel_after_two)
    assert _predict_all(qtbot, win) == "cancelled"
    series = record.extra["series"]
    assert sorted(series.frames) == [0, 1]
    folders = sorted(p.name for p in series.run_dir.iterdir() if p.is_dir())
    assert folders == ["t00000", "t00001"]  # no folder (or temp file) of the cancelled frame
    assert not [p for p in series.run_dir.rglob("*") if p.is_file() and ".tmp" in p.name]
    win.time_lapse.bar.set_time(1)
    assert win.panels.prediction_panel.plane is not None
    win.time_lapse.bar.set_time(2)
    assert "not predicted yet" in win.panels.prediction_panel.message
    assert not win.time_lapse.export_current(series_path.parent)  # refused: not every frame is predicted
    monkeypatch.setattr(series_run, "predict_series", real)
    assert _predict_all(qtbot, win) == "done"  # goes on with the frames missing
    assert record.extra["series"] is series and series.complete()


def test_export_writes_a_tczyx_ome_tiff_and_a_movie_with_every_frame(qtbot, win, series_path, tmp_path):
    from PIL import Image as PILImage

    _open(qtbot, win, series_path)
    assert _predict_all(qtbot, win) == "done"
    out = tmp_path / "out"
    out.mkdir()
    with qtbot.waitSignal(win.time_lapse.exported, timeout=60000) as exported:
        assert win.time_lapse.export_current(out) is True
    written = [Path(p) for p in exported.args[0]]
    prediction = next(p for p in written if p.name.endswith(".ome.tif"))
    image = read_image(prediction)
    assert image.data.shape == (FRAMES, 1, 1, HEIGHT, WIDTH)
    meta = read_provenance(prediction)
    assert "time_point" not in meta["settings"] and meta["inputs"][0].get("sha256")
    series = win.file_list.current().extra["series"]
    np.testing.assert_allclose(np.asarray(image.data)[2], np.asarray(read_image(series.frames[2].prediction).data))
    movie = next(p for p in written if "__movie" in p.name)
    with PILImage.open(movie) as opened:
        assert opened.n_frames == FRAMES
        assert opened.size[0] > 3 * WIDTH  # input | prediction | overlay
