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
    import imageio.v3 as iio

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
    frames = iio.imread(movie, index=None)  # a GIF, or an MP4 where an encoder is installed
    assert frames.shape[0] == FRAMES
    assert frames.shape[2] > 3 * WIDTH  # input | prediction | overlay


def test_going_through_a_series_twice_keeps_only_the_last_few_frames_in_memory(qtbot, win, series_path, monkeypatch):
    """A 500-frame series must not sit in memory: the window keeps the last ``KEPT_FRAMES`` frames of each
    panel and reads the others again (from the input and the written files) when they are shown."""
    import gc
    import weakref

    from labelfree_app.gui.predict import time_lapse

    monkeypatch.setattr(time_lapse, "KEPT_FRAMES", 2)
    _open(qtbot, win, series_path)
    assert _predict_all(qtbot, win) == "done"
    tl = win.time_lapse
    read: list[weakref.ref] = []  # every frame array the window read, input and result alike

    def watched(read_frame):
        def read_and_watch(*args):
            array = read_frame(*args)
            read.append(weakref.ref(array))
            return array
        return read_and_watch

    monkeypatch.setattr(time_lapse, "frame_volume", watched(time_lapse.frame_volume))
    monkeypatch.setattr(tl, "_read", watched(tl._read))
    held = []
    for t in [*range(FRAMES), *range(FRAMES)]:  # the bar sits on the last frame, so each step is a move
        tl.bar.set_time(t)
        held.append(len(tl._cache))
    gc.collect()
    assert len(read) == 2 * 2 * FRAMES  # input + prediction, read again on the second pass
    assert max(held) <= 3 * time_lapse.KEPT_FRAMES
    alive = sum(ref() is not None for ref in read)
    assert alive <= 3 * time_lapse.KEPT_FRAMES  # not one per frame: nothing else (panels, items) keeps them
    np.testing.assert_allclose(win.panels.input_panel.plane, np.asarray(read_image(series_path).data[FRAMES - 1, 0, 0]))


def test_playback_reads_frames_ahead_off_the_gui_thread_and_shows_every_one_in_order(
        qtbot, win, series_path, monkeypatch):
    """On a slow disk playback slows down but never reads on the GUI thread, skips a frame or shows a
    frame that is not read yet; dragging the slider still reads at once."""
    import threading
    import time

    from labelfree_app.gui.predict import time_lapse

    _open(qtbot, win, series_path)
    assert _predict_all(qtbot, win) == "done"
    tl, bar = win.time_lapse, win.time_lapse.bar
    bar.set_time(0)
    tl._cache.clear()  # as after going elsewhere in a long series: nothing ahead is kept
    readers: list[bool] = []  # per read: on the GUI thread?

    def slow(read_frame):
        def read(*args):
            readers.append(threading.current_thread() is threading.main_thread())
            time.sleep(0.15)
            return read_frame(*args)
        return read

    monkeypatch.setattr(time_lapse, "frame_volume", slow(time_lapse.frame_volume))
    monkeypatch.setattr(tl, "_read", slow(tl._read))
    shown: list[tuple[int, np.ndarray]] = []
    tl.frameShown.connect(lambda t: shown.append((t, win.panels.input_panel.plane.copy())))
    bar.set_fps(30)
    bar.play()
    qtbot.waitUntil(lambda: len(shown) >= FRAMES + 1, timeout=20000)
    bar.pause()
    assert readers and not any(readers)  # every playback read ran on the thread pool
    order = [t for t, _ in shown]
    assert order[:FRAMES + 1] == [*range(1, FRAMES), 0, 1]  # each frame once, in order, looping
    frames = np.asarray(read_image(series_path).data)[:, 0, 0]
    for t, plane in shown:
        np.testing.assert_allclose(plane, frames[t])
    readers.clear()
    bar.set_time(3)  # the slider: shown at once (read now if it is not kept)
    np.testing.assert_allclose(win.panels.input_panel.plane, frames[3])


def test_the_movie_is_written_picture_by_picture_not_gathered_first(tmp_path, monkeypatch):
    """Each picture of the movie is on disk before the next one is made (a GIF here), so a 500-frame movie
    holds one picture, not 500."""
    from PIL import Image as PILImage

    from labelfree_app.gui.predict import series_export

    monkeypatch.setattr(series_export, "can_write_mp4", lambda: False)
    grey = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (20, 2))[:, :48]  # (20, 48), 25 levels
    made, on_disk = [], []

    def pictures():
        for t in range(FRAMES):
            on_disk.append(sum(p.stat().st_size for p in tmp_path.iterdir()))
            picture = np.stack([np.roll(grey, 4 * t, axis=1), grey, np.full_like(grey, 30 * t)], axis=-1)
            made.append(picture)
            yield picture

    path = series_export.write_movie(tmp_path / "movie", pictures(), 5)
    assert path.name == "movie.gif" and [p.name for p in tmp_path.iterdir()] == ["movie.gif"]
    assert all(after > before for before, after in zip(on_disk, on_disk[1:])), on_disk
    with PILImage.open(path) as gif:
        assert gif.n_frames == FRAMES and gif.info["loop"] == 0 and gif.info["duration"] == 200
        for t in range(FRAMES):
            gif.seek(t)
            np.testing.assert_array_equal(np.asarray(gif.convert("RGB")), made[t])


@pytest.mark.parametrize("library", ["imageio_ffmpeg", "av"])
def test_an_mp4_movie_is_written_through_the_temp_file_with_every_picture(tmp_path, monkeypatch, library):
    """Where an MP4 encoder is installed: the atomic temp file's name does not end in .mp4, so the
    container is named, not guessed; each encoder takes the pictures one at a time."""
    import importlib.util

    pytest.importorskip(library)
    from labelfree_app.gui.predict import series_export

    other = {"imageio_ffmpeg": "av", "av": "imageio_ffmpeg"}[library]
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == other else find_spec(name, *a))
    grey = np.tile(np.linspace(0, 255, 65).astype(np.uint8), (33, 1))  # odd sides: the encoder pads or scales

    def pictures():
        for t in range(FRAMES):
            yield np.stack([np.roll(grey, 5 * t, axis=1), grey, np.full_like(grey, 40 * t)], axis=-1)

    path = series_export.write_movie(tmp_path / "movie", pictures(), 5)
    assert path.name == "movie.mp4" and [p.name for p in tmp_path.iterdir()] == ["movie.mp4"]
    import imageio.v3 as iio

    frames = iio.imread(path, index=None, **({"plugin": "pyav"} if library == "av" else {}))
    assert frames.shape[0] == FRAMES and frames.shape[1] >= 33 and frames.shape[2] >= 65
