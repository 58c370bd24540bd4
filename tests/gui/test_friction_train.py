"""Issue 28 item 11 (the Train page): the bar counts time under a time budget, paths keep their file
name, closing mid-training asks, and Install and run brings the main window forward."""

from __future__ import annotations

from labelfree_app.gui.train.live import PROGRESS_UNITS, progress_of
from labelfree_app.gui.train.page import TrainDialog
from tests.gui.test_train_page import add_pairs, dialog, start_and_wait_steps, tiny, write_pairs  # noqa: F401


def test_a_two_minute_budget_fills_the_bar_in_two_minutes_not_at_five_percent_of_the_steps():
    value, text = progress_of(step=240, max_steps=5000, run_seconds=60.0, budget_s=120.0)
    assert value == PROGRESS_UNITS // 2 and text == "1 min 00 s of 2 min 00 s (step 240)"
    end, _ = progress_of(step=480, max_steps=5000, run_seconds=120.0, budget_s=120.0)
    assert end == PROGRESS_UNITS
    steps_value, steps_text = progress_of(step=40, max_steps=50, run_seconds=1.0, budget_s=600.0)
    assert steps_value == 800 and steps_text == "step 40 / 50"  # the steps end the run first


def test_the_pair_lists_cut_long_paths_in_the_middle_so_the_file_name_shows(qtbot, dialog):
    from PySide6.QtCore import Qt

    box = dialog.setup.pairs_box
    assert box.input_list.textElideMode() == Qt.TextElideMode.ElideMiddle
    assert box.target_list.textElideMode() == Qt.TextElideMode.ElideMiddle


def test_closing_mid_training_asks_and_no_keeps_it_training(qtbot, dialog, tmp_path):
    bf, dapi = write_pairs(tmp_path)
    add_pairs(qtbot, dialog, [bf], [dapi])
    dialog.setup.target_edit.setText("nuclei")
    dialog.setup.out_edit.setText(str(tmp_path / "model"))
    dialog.setup.config_changes = tiny(max_steps=100000)
    start_and_wait_steps(qtbot, dialog, 3)
    asked: list[str] = []
    dialog.confirm_close = lambda question: asked.append(question) or False
    dialog.close()
    assert asked and "Training is running" in asked[0]
    assert dialog.isVisible() and dialog.is_running()
    dialog.confirm_close = lambda question: True
    dialog.close()
    assert not dialog.is_running() and not dialog.isVisible()


def test_install_and_run_raises_the_main_window_over_the_train_page(qtbot, monkeypatch):
    from PySide6.QtWidgets import QWidget

    from labelfree_app.gui.backend import CoreBackend

    main = QWidget()
    qtbot.addWidget(main)
    page = TrainDialog(CoreBackend(), parent=main)
    raised: list[str] = []
    monkeypatch.setattr(main, "raise_", lambda: raised.append("raise"))
    monkeypatch.setattr(main, "activateWindow", lambda: raised.append("activate"))
    page._raise_main_window()
    assert raised == ["raise", "activate"]


def test_the_pair_check_shows_the_picked_pair_large_not_as_65_px_thumbnails(qtbot, dialog, tmp_path):
    bf, dapi = write_pairs(tmp_path, names=("a", "b"), shape=(96, 96))
    dialog.resize(900, 700)
    add_pairs(qtbot, dialog, [bf], [dapi])
    box = dialog.setup.pairs_box
    qtbot.wait(100)
    view = box.preview.views[0][0]
    assert view.height() >= 150, view.height()
    box.pair_table.setCurrentCell(1, 0)
    assert box.preview.items[0][1].image is not None
    assert "b.tif" in box.preview.titles[0][1].text


def test_a_trained_model_never_takes_the_name_of_an_installed_one():
    from labelfree_app.gui.train.page import unique_name

    assert unique_name("My nuclei", ["Other"]) == "My nuclei"
    assert unique_name("My nuclei", ["My nuclei"]) == "My nuclei (2)"
    assert unique_name("My nuclei", ["My nuclei", "My nuclei (2)"]) == "My nuclei (3)"
    assert unique_name("", ["x"]) == ""
