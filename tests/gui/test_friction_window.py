"""Issue 28 items 10, 15, 17, 18 in the real window (CoreBackend, the bundled models, the demo)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget

from labelfree_app.gui.batch.dialog import BatchDialog
from labelfree_app.gui.dialogs import ModelChecklist
from labelfree_app.gui.files.file_list import LOADED, PREDICTING
from labelfree_app.gui.models.labels import MiddleElidedCombo, model_label
from labelfree_app.gui.settings import GuiSettings
from labelfree_app.paths import demo_image
from tests.gui.helpers import select_model

pytest.importorskip("torch")


@pytest.fixture
def window(qtbot):
    from labelfree_app.gui.backend import CoreBackend
    from labelfree_app.gui.main_window import MainWindow

    win = MainWindow(CoreBackend(), GuiSettings())
    qtbot.addWidget(win)
    win.resize(1366, 768)
    win.show()
    qtbot.waitUntil(lambda: bool(win.models), timeout=30000)
    return win


@pytest.fixture
def three_files(tmp_path) -> list[Path]:
    paths = [tmp_path / f"field_{k}.ome.tif" for k in range(3)]
    for path in paths:
        shutil.copy(demo_image(), path)
    return paths


def _loaded(qtbot, window, count: int) -> None:
    qtbot.waitUntil(lambda: len(window.file_list.files) == count
                    and all(f.state == LOADED for f in window.file_list.files), timeout=20000)


# --- item 10: the file list ---------------------------------------------------------------
def test_delete_removes_the_selected_file_and_shows_the_next_one(qtbot, window, three_files):
    window.open_inputs(three_files)
    _loaded(qtbot, window, 3)
    window.file_list.setCurrentRow(1)
    qtbot.keyClick(window.file_list, Qt.Key.Key_Delete)
    assert [f.path for f in window.file_list.files] == [three_files[0], three_files[2]]
    assert window.file_list.count() == 2
    shown = window.file_list.current()
    assert shown is not None and shown.path.name in window.panels.input_panel.title_label.text


def test_the_context_menu_removes_all_files_but_never_one_being_predicted(qtbot, window, three_files):
    window.open_inputs(three_files)
    _loaded(qtbot, window, 3)
    window.file_list.files[0].state = PREDICTING
    menu = window.file_list.remove_menu()
    everything = next(a for a in menu.actions() if a.text() == "Remove all files from the list")
    everything.trigger()
    assert [f.path for f in window.file_list.files] == [three_files[0]]
    assert three_files[1].exists()  # nothing on disk is touched


def test_the_file_list_is_wide_enough_for_a_name_and_its_state_and_its_handle_is_visible(qtbot, window):
    dock = window.findChild(QDockWidget, "files_dock")
    assert window.file_list.width() >= 260 and dock.width() >= 270
    assert "QMainWindow::separator" in window.styleSheet() and "background" in window.styleSheet()


# --- item 15: names -------------------------------------------------------------------------
def test_bundled_model_names_are_never_doubled_and_the_generalists_differ_when_cut(qtbot, window):
    labels = {m.id: model_label(m) for m in window.models}
    assert all(") (" not in label for label in labels.values()), labels
    assert labels["isl-map2-unet"] == "ISL MAP2 U-Net (phase z-stack)"
    assert len(set(labels.values())) == len(labels)
    combo = window.controls.model_combo
    assert isinstance(combo, MiddleElidedCombo)
    combo.resize(260, combo.height())
    shown = set()
    for model_id in ("lf-nuclei-2d", "lf-nuclei-2d-diffusion"):
        select_model(window, model_id)
        shown.add(combo.shown_text())
    assert len(shown) == 2, shown  # cut in the middle: the ends that differ stay in view
    assert all(text.startswith("Nuclei") for text in shown)


def test_the_batch_dialog_names_models_not_ids(qtbot, window):
    checklist = ModelChecklist(window.models)
    qtbot.addWidget(checklist)
    texts = [checklist.item(row).text() for row in range(checklist.count())]
    assert not any(text.split(" ")[0] in {m.id for m in window.models} for text in texts), texts
    assert "ISL MAP2 U-Net (phase z-stack) — predicts MAP2 (dendrites, somata)" in texts
    dialog = BatchDialog(window.backend, window.models)
    qtbot.addWidget(dialog)
    assert dialog.model_names["isl-dapi-unet"] == "ISL DAPI U-Net (phase z-stack)"


# --- item 17: the denoising slider at 1366×768 ---------------------------------------------
@pytest.mark.parametrize("size", [(1366, 768), (1920, 1080)])
def test_the_denoising_step_slider_is_a_usable_slider_at_both_sizes(qtbot, window, size):
    window.open_inputs([demo_image()])
    _loaded(qtbot, window, 1)
    window.resize(*size)
    qtbot.wait(200)
    assert window.panels.player.slider.width() >= 120
    assert window.panels.player.slider.isVisible()
    wrapped = window.panels._wrap_row.indexOf(window.panels.denoising_row) >= 0
    assert wrapped == (window.panels.width() < 960)


# --- item 18: Open output folder -----------------------------------------------------------
def test_open_output_folder_says_where_the_folder_is_when_no_file_manager_answers(qtbot, window, tmp_path):
    from PySide6.QtGui import QGuiApplication

    dialog = BatchDialog(window.backend, window.models)
    qtbot.addWidget(dialog)
    dialog.out_edit.setText(str(tmp_path))
    dialog.opener = lambda url: False  # no file manager on this desktop
    dialog.open_button.setEnabled(True)
    dialog.open_output_folder()
    assert str(tmp_path) in dialog.summary_label.text() and "No file manager" in dialog.summary_label.text()
    assert QGuiApplication.clipboard().text() == str(tmp_path)
    dialog.opener = lambda url: True
    dialog.open_output_folder()
    assert dialog.summary_label.text() == f"Output folder: {tmp_path} (opening it in your file manager)."
