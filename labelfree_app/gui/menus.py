"""The main window's menus and toolbar; the actions that tests and dialogs use are kept on the window."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence

from labelfree_app.gui import plane_series, result_actions
from labelfree_app.gui.batch_dialog import open_batch_dialog


def _action(window: Any, menu: Any, text: str, slot: Any, shortcut: Any = None, checkable: bool = False) -> QAction:
    action = QAction(text, window)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    action.setCheckable(checkable)
    action.triggered.connect(slot)
    menu.addAction(action)
    return action


def build_menus(w: Any) -> None:
    """File, View, Analysis, Models and Help menus and the main toolbar of the main window ``w``."""
    bar = w.menuBar()
    file_menu = bar.addMenu("&File")
    _action(w, file_menu, "&Open files…", w.open_dialog, QKeySequence.StandardKey.Open)
    _action(w, file_menu, "Open &folder…", w.open_folder_dialog)
    _action(w, file_menu, "Open planes as &z-stack…", lambda: plane_series.open_stack_dialog(w))
    w.recent_menu = file_menu.addMenu("Open &recent")
    file_menu.addSeparator()
    w.export_action = _action(w, file_menu, "&Export result…", lambda: result_actions.export_current(w), "Ctrl+E")
    _action(w, file_menu, "Choose export folder…", lambda: result_actions.choose_export_folder(w))
    w.batch_export_action = _action(w, file_menu, "&Batch export…", lambda: open_batch_dialog(w), "Ctrl+B")
    w.batch_export_action.setObjectName("batch_export_action")
    file_menu.addSeparator()
    _action(w, file_menu, "&Quit", w.close, QKeySequence.StandardKey.Quit)

    view = bar.addMenu("&View")
    w.max_projection_action = _action(w, view, "&Max projection", w.panels.set_max_projection, "Ctrl+M", True)
    w.panels.max_projection_box.toggled.connect(w.max_projection_action.setChecked)
    w.overlay_action = _action(w, view, "&Overlay prediction on input", w.panels.set_overlay, "Ctrl+L", True)
    w.panels.overlay_box.toggled.connect(w.overlay_action.setChecked)
    layout_menu = view.addMenu("Panel &layout")
    group = QActionGroup(w)
    for text, columns in (("Automatic", None), ("In a row", 4), ("2 × 2 grid", 2)):
        action = _action(w, layout_menu, text, lambda _=False, c=columns: w.panels.arrange(c), None, True)
        action.setChecked(columns is None)
        group.addAction(action)
    _action(w, view, "&Auto-contrast all panels", w._auto_contrast_all, "Ctrl+A")
    _action(w, view, "&Reset zoom", lambda: w.panels.input_panel.view_box.autoRange(padding=0.0), "Ctrl+0")
    w.show_x0_action = _action(w, view, "Denoising shows predicted clean image", w._set_preview_kind, None, True)

    analysis = bar.addMenu("&Analysis")
    w.compare_action = _action(w, analysis, "&Compare with ground truth…", lambda: result_actions.compare_current(w),
                               "Ctrl+G")

    models = bar.addMenu("&Models")
    _action(w, models, "&Manage models…", w.open_model_manager)
    _action(w, models, "Model &card…", lambda: w.show_model_card(w.controls.model_id() or ""))
    from labelfree_app.gui.train_page import open_train_dialog  # the Models ▸ Train a model page

    w.train_action = _action(w, models, "&Train a model…", lambda: open_train_dialog(w))

    help_menu = bar.addMenu("&Help")
    from labelfree_app.gui.self_test import open_self_test_dialog  # the Help ▸ Self-test dialog

    w.self_test_action = _action(w, help_menu, "&Self-test…", lambda: open_self_test_dialog(w))
    _action(w, help_menu, "&About LabelFree", w.show_about)

    toolbar = w.addToolBar("Main")
    toolbar.setObjectName("main_toolbar")
    toolbar.setMovable(False)
    toolbar.addAction("Open…", w.open_dialog)
    toolbar.addAction("Run", w.run_current).setShortcut(QKeySequence("Ctrl+R"))
    toolbar.addAction("Cancel", w.runner.cancel).setShortcut(QKeySequence(Qt.Key.Key_Escape))
    toolbar.addSeparator()
    toolbar.addAction(w.overlay_action)
    toolbar.addAction(w.compare_action)
    toolbar.addAction(w.export_action)
