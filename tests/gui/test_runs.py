"""Running predictions from the window: panels, U-Net vs diffusion, cancel, errors, responsiveness."""

from __future__ import annotations

import threading

import numpy as np
from PySide6.QtCore import QTimer

from labelfree_app.errors import InputShapeError
from labelfree_app.gui.files.file_list import DONE, FAILED, LOADED
from labelfree_app.gui.viewer.panel_grid import NO_UNCERTAINTY_NOTE, UNET_DENOISING_NOTE
from tests.gui.helpers import drop_files, run_and_wait, select_model, wait_loaded


def _open(qtbot, window, path):
    drop_files(window, [path])
    wait_loaded(qtbot, window)
    return window.file_list.current()


def test_a_diffusion_run_fills_all_four_panels(qtbot, window, tiff_2d):
    record = _open(qtbot, window, tiff_2d)
    assert run_and_wait(qtbot, window) == DONE
    panels = window.panels
    result = record.result
    assert record.state == DONE and result.model_id == "diff-nuclei"
    np.testing.assert_allclose(panels.prediction_panel.plane, result.prediction[0, 0])
    np.testing.assert_allclose(panels.variance_panel.plane, result.variance[0, 0])
    assert panels.variance_panel.title_label.text.startswith("Variance over 2 samples")
    # The denoising panel replays the result's frames, ending on the last one.
    assert panels.player.count == len(result.frames) == 3
    np.testing.assert_allclose(panels.denoising_panel.plane, result.frames[-1, 0, 0])
    panels.player.show_frame(0)
    np.testing.assert_allclose(panels.denoising_panel.plane, result.frames[0, 0, 0])
    for panel in panels.panels:
        assert panel.message == ""
    assert window.controls.progress_bar.value() == 1000
    assert "predicted" in window.statusBar().currentMessage()


def test_replay_plays_through_the_frames_and_stops_at_the_end(qtbot, window, tiff_2d):
    _open(qtbot, window, tiff_2d)
    run_and_wait(qtbot, window)
    player = window.panels.player
    shown: list[int] = []
    player.frameChanged.connect(shown.append)
    player.play()
    assert player.is_playing()
    qtbot.waitUntil(lambda: not player.is_playing(), timeout=3000)
    assert shown == [0, 1, 2]


def test_a_unet_run_says_it_has_no_denoising_steps_and_no_uncertainty(qtbot, window, tiff_2d):
    record = _open(qtbot, window, tiff_2d)
    select_model(window, "unet-nuclei")
    assert window.controls.unet_box.isVisibleTo(window) and not window.controls.diffusion_box.isVisibleTo(window)
    assert run_and_wait(qtbot, window) == DONE
    panels = window.panels
    assert panels.denoising_panel.message == UNET_DENOISING_NOTE
    assert panels.variance_panel.message == NO_UNCERTAINTY_NOTE
    np.testing.assert_allclose(panels.prediction_panel.plane, record.result.prediction[0, 0])
    assert not panels.player.isEnabled()


def test_a_unet_run_with_tta_shows_the_augmentation_variance(qtbot, window, tiff_2d):
    record = _open(qtbot, window, tiff_2d)
    select_model(window, "unet-nuclei")
    window.controls.tta_box.setChecked(True)
    assert window.controls.settings()["tta"] is True
    assert run_and_wait(qtbot, window) == DONE
    panels = window.panels
    assert panels.variance_panel.message == ""
    assert "test-time augmentation" in panels.variance_panel.title_label.text
    np.testing.assert_allclose(panels.variance_panel.plane, record.result.variance[0, 0])


def test_cancel_stops_within_two_seconds_and_keeps_the_previous_result(qtbot, window, backend, tiff_2d):
    record = _open(qtbot, window, tiff_2d)
    assert run_and_wait(qtbot, window) == DONE
    previous = record.result
    backend.step_seconds = 0.05
    backend.steps = 200  # would take 20 s
    window.panels.player.show_frame(0)
    with qtbot.waitSignal(window.runner.finished, timeout=5000) as blocker:
        window.controls.seed_spin.setValue(7)
        assert window.run_current()
        qtbot.waitUntil(lambda: backend.steps_run > 5, timeout=3000)
        window.controls.cancel_button.click()
        steps_at_cancel = backend.steps_run
    assert blocker.args[1] == "cancelled"
    assert backend.generator_closed.is_set()  # closed before ``finished``: its finally ran
    assert backend.steps_run <= steps_at_cancel + 2  # stopped between events, not at the end (400 steps)
    assert record.result is previous and record.state == DONE
    np.testing.assert_allclose(window.panels.prediction_panel.plane, previous.prediction[0, 0])
    np.testing.assert_allclose(window.panels.denoising_panel.plane, previous.frames[-1, 0, 0])
    assert "cancelled" in window.statusBar().currentMessage()
    assert window.controls.run_button.isEnabled() and not window.controls.cancel_button.isEnabled()


def test_an_engine_error_reaches_the_status_bar_and_a_dialog_as_its_sentence(qtbot, window, backend, tiff_2d):
    sentence = "cells_2d.tif has 1 channel but the model takes 3; open a file with 3 channels."
    backend.fail_with = InputShapeError(sentence)
    record = _open(qtbot, window, tiff_2d)
    assert run_and_wait(qtbot, window) == FAILED
    assert window.statusBar().currentMessage() == sentence
    assert record.state == FAILED and sentence in window.file_list.item(0).toolTip()
    box = window.dialogs[-1]
    assert box.text() == sentence and box.isVisible()
    box.close()
    # Nothing is stuck: the next run works.
    backend.fail_with = None
    assert run_and_wait(qtbot, window) == DONE


def test_an_unexpected_engine_error_names_the_log_file(qtbot, backend, tiff_2d, tmp_path):
    from labelfree_app.gui.main_window import MainWindow
    from labelfree_app.gui.settings import GuiSettings

    log_file = tmp_path / "labelfree.log"
    window = MainWindow(backend, GuiSettings(), log_file=log_file)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.controls.model_id() is not None, timeout=3000)
    backend.fail_with = ZeroDivisionError("division by zero")
    _open(qtbot, window, tiff_2d)
    assert run_and_wait(qtbot, window) == FAILED
    box = window.dialogs[-1]
    assert str(log_file) in box.text() and "unexpected" in box.text()
    assert "Traceback" not in window.statusBar().currentMessage()


def test_every_preview_the_engine_sends_is_shown_in_step_order(qtbot, window, backend, tiff_2d):
    """The engine throttles previews; the window must not drop or reorder the ones it sends."""
    _open(qtbot, window, tiff_2d)
    backend.steps = 12
    backend.samples = 1
    shown: list[str] = []
    original = window.panels.show_live_preview

    def spy(image, label):
        shown.append(label)
        original(image, label)

    window.panels.show_live_preview = spy
    assert run_and_wait(qtbot, window) == DONE
    assert shown == [f"sample 1, step {k}/12" for k in range(1, 13)]


def test_a_throttling_engine_shows_fewer_previews_but_always_the_last_step(qtbot, window, backend, tiff_2d):
    _open(qtbot, window, tiff_2d)
    backend.steps = 30
    backend.samples = 1
    backend.preview_interval_s = 3600.0  # only the first and the last step pass the engine's throttle
    shown: list[str] = []
    original = window.panels.show_live_preview
    window.panels.show_live_preview = lambda image, label: (shown.append(label), original(image, label))
    assert run_and_wait(qtbot, window) == DONE
    assert shown == ["sample 1, step 1/30", "sample 1, step 30/30"]


def test_previews_of_the_other_kind_are_not_shown_once_the_chosen_kind_arrived(qtbot, window, tiff_2d):
    from labelfree_app.core.events import Preview

    record = _open(qtbot, window, tiff_2d)
    runner = window.runner
    runner.record = record
    window.menus.show_x0_action.trigger()
    assert runner.preview_kind == "pred_x0"
    x0 = np.full((1, 1, 48, 64), 5.0, np.float32)
    noisy = np.zeros((1, 1, 48, 64), np.float32)
    runner._on_preview(Preview("pred_x0", 0, 1, 10, x0))
    runner._on_preview(Preview("x_t", 0, 1, 10, noisy))
    assert float(window.panels.denoising_panel.plane.mean()) == 5.0


def test_the_engine_runs_off_the_gui_thread_which_keeps_handling_events(qtbot, window, backend, tiff_2d):
    """The run blocks until the GUI thread answers a timer: were it on the GUI thread, it would hang.

    How long the event loop may pause under load is measured in benchmarks/gui_responsiveness.py."""
    _open(qtbot, window, tiff_2d)
    answered = threading.Event()
    worker_thread_ids: list[int] = []
    original_run = backend.run

    def run(*args, **kwargs):
        worker_thread_ids.append(threading.get_ident())
        assert answered.wait(5.0), "the GUI thread did not run while the engine was busy"
        yield from original_run(*args, **kwargs)

    backend.run = run
    QTimer.singleShot(20, answered.set)
    assert run_and_wait(qtbot, window) == DONE
    assert worker_thread_ids and worker_thread_ids[0] != threading.get_ident()


def test_run_without_a_file_explains_what_to_do(qtbot, window):
    assert not window.run_current()
    assert "Open an image first" in window.statusBar().currentMessage()


def test_switching_files_during_a_run_keeps_the_result_with_its_file(qtbot, window, backend, tiff_2d, tiff_3d_two_channels):
    drop_files(window, [tiff_2d, tiff_3d_two_channels])
    wait_loaded(qtbot, window, count=2)
    first, second = window.file_list.files
    window.file_list.select(first)
    backend.step_seconds = 0.01
    with qtbot.waitSignal(window.runner.finished, timeout=10000):
        window.run_current()
        window.file_list.select(second)
    assert first.result is not None and first.state == DONE
    assert second.result is None and second.state == LOADED
    assert window.panels.prediction_panel.plane is None  # the second file has no result yet
    window.file_list.select(first)
    np.testing.assert_allclose(window.panels.prediction_panel.plane, first.result.prediction[0, 0])


def test_frame_labels_name_the_denoising_steps_the_engine_kept():
    from labelfree_app.gui.predict.runner import frame_step_labels

    assert frame_step_labels(3, 5) == ["step 1/5", "step 3/5", "step 5/5"]
    assert frame_step_labels(3, None) is None
    assert frame_step_labels(9, 4) is None  # more frames than steps: not from this sampler


def test_the_prediction_panel_says_which_units_its_values_are_in(qtbot, window, backend, tiff_2d, monkeypatch):
    _open(qtbot, window, tiff_2d)
    select_model(window, "unet-nuclei")
    assert run_and_wait(qtbot, window) == DONE
    assert "z-score" in window.panels.prediction_panel.title_label.text  # the fake's result names no units
    record = window.file_list.files[0]
    record.result.settings["units"] = "stain"
    window.runner.show_result(record)
    assert "stain units" in window.panels.prediction_panel.title_label.text
