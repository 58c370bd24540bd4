"""Opening files: drag-and-drop anywhere, folders, corrupt files, channel picker, z controls, recent."""

from __future__ import annotations



import numpy as np

from labelfree_app.gui.files.file_list import DONE, FAILED, LOADED
from tests.gui.fakes import write_tiff
from tests.gui.helpers import drop_files, run_and_wait, wait_loaded


def test_dropping_a_file_on_the_window_loads_and_shows_it(qtbot, window, tiff_2d):
    event = drop_files(window, [tiff_2d])
    assert event.isAccepted()
    wait_loaded(qtbot, window)
    record = window.file_list.files[0]
    assert record.path == tiff_2d and record.state == LOADED
    assert window.file_list.current() is record
    shown = window.panels.input_panel.plane
    assert shown is not None and shown.shape == (48, 64)
    np.testing.assert_allclose(shown, record.image.data[0, 0])


def test_dropping_on_an_image_panel_also_opens_the_file(qtbot, window, tiff_2d):
    drop_files(window.panels.input_panel.graphics, [tiff_2d])
    wait_loaded(qtbot, window)
    assert window.file_list.files[0].state == LOADED


def test_dropping_a_folder_lists_every_image_in_it(qtbot, window, tmp_path):
    folder = tmp_path / "plate"
    folder.mkdir()
    for name in ("b.tif", "a.tiff"):
        write_tiff(folder / name, np.ones((1, 1, 8, 8), np.float32), ["bright-field"])
    (folder / "notes.txt").write_text("not an image")
    drop_files(window, [folder])
    wait_loaded(qtbot, window, count=2)
    assert [r.path.name for r in window.file_list.files] == ["a.tiff", "b.tif"]
    assert all(r.state == LOADED for r in window.file_list.files)


def test_a_corrupt_file_fails_with_its_reason_and_the_app_keeps_working(qtbot, window, tmp_path, tiff_2d):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00 this is not really a tiff")
    drop_files(window, [broken])
    wait_loaded(qtbot, window)
    record = window.file_list.files[0]
    assert record.state == FAILED
    assert "broken.tif" in record.reason and record.reason.endswith(".")
    assert record.reason in window.file_list.item(0).toolTip()
    assert window.statusBar().currentMessage() == record.reason
    assert "could not be read" in window.panels.input_panel.message
    # The app still works: a good file loads and predicts.
    drop_files(window, [tiff_2d])
    wait_loaded(qtbot, window, count=2)
    assert run_and_wait(qtbot, window) == DONE
    assert window.file_list.find(tiff_2d).state == DONE


def test_channel_picker_preselects_the_transmitted_light_channel(qtbot, window, tiff_3d_two_channels):
    drop_files(window, [tiff_3d_two_channels])
    wait_loaded(qtbot, window)
    record = window.file_list.files[0]
    combo = window.channel_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["DAPI", "Brightfield"]
    assert combo.currentIndex() == 1 and record.channel == 1
    z = window.panels.z
    np.testing.assert_allclose(window.panels.input_panel.plane, record.image.data[1, z])
    combo.setCurrentIndex(0)
    assert record.channel == 0
    np.testing.assert_allclose(window.panels.input_panel.plane, record.image.data[0, z])


def test_z_slider_and_max_projection_drive_every_panel(qtbot, window, tiff_3d_two_channels):
    drop_files(window, [tiff_3d_two_channels])
    wait_loaded(qtbot, window)
    assert run_and_wait(qtbot, window) == DONE
    panels = window.panels
    record = window.file_list.files[0]
    assert panels.z_slider.maximum() == 4 and panels.z_slider.isEnabled()
    panels.z_slider.setValue(1)
    np.testing.assert_allclose(panels.input_panel.plane, record.image.data[1, 1])
    np.testing.assert_allclose(panels.prediction_panel.plane, record.result.prediction[0, 1])
    np.testing.assert_allclose(panels.variance_panel.plane, record.result.variance[0, 1])
    panels.max_projection_box.setChecked(True)
    assert not panels.z_slider.isEnabled()
    assert window.menus.max_projection_action.isChecked()
    np.testing.assert_allclose(panels.input_panel.plane, record.image.data[1].max(axis=0))
    np.testing.assert_allclose(panels.prediction_panel.plane, record.result.prediction[0].max(axis=0))
    np.testing.assert_allclose(panels.denoising_panel.plane, panels.frames[-1].max(axis=0))


def test_opened_files_appear_in_the_recent_menu(qtbot, window, tiff_2d):
    window.open_paths([tiff_2d])
    wait_loaded(qtbot, window)
    actions = window.menus.recent_menu.actions()
    assert actions and actions[0].toolTip() == str(tiff_2d)
    assert window.settings.get("recent_files")[0] == str(tiff_2d)


def test_dropping_something_that_is_not_an_image_folder_says_so(qtbot, window, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    drop_files(window, [empty])
    assert window.file_list.count() == 0
    assert "No TIFF or PNG" in window.statusBar().currentMessage()




def test_file_open_dialog_opens_the_chosen_files(qtbot, window, tiff_2d, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: ([str(tiff_2d)], "Images"))
    window.open_dialog()
    wait_loaded(qtbot, window)
    assert window.file_list.files[0].path == tiff_2d and window.file_list.files[0].state == LOADED


def test_the_models_menu_opens_the_model_manager(qtbot, window):
    dialog = window.open_model_manager()
    assert dialog.isVisible() and dialog.model_list.count() == 3
