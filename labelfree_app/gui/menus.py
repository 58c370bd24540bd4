"""The main window's menus and toolbar, built from the callbacks the window hands in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu

from labelfree_app.gui.viewer.panel_grid import PanelGrid

Slot = Callable[[], Any]


@dataclass(frozen=True)
class MenuCallbacks:
    """What each menu entry does; the window wires these to its features."""

    open_files: Slot
    open_folder: Slot
    open_stack: Slot
    export: Slot
    choose_export_folder: Slot
    batch_export: Slot
    watch_folder: Slot  # Watch folder…: predict each image as the microscope writes it
    show_x0: Callable[[bool], Any]
    compare: Slot
    manage_models: Slot
    model_card: Slot
    train: Slot
    improve: Slot  # Improve for my images…: fine-tune the shown result's model on this image
    self_test: Slot
    about: Slot
    run: Slot
    cancel: Slot
    view_actions: Sequence[QAction] = ()  # features' own View entries (e.g. the trust map toggle)


@dataclass(frozen=True)
class Menus:
    """The actions and menus that the window (and tests) use after the menus are built."""

    recent_menu: QMenu
    export_action: QAction
    batch_export_action: QAction
    watch_action: QAction
    max_projection_action: QAction
    overlay_action: QAction
    show_x0_action: QAction
    compare_action: QAction
    train_action: QAction
    self_test_action: QAction
    improve_action: QAction


def _action(window: QMainWindow, menu: Any, text: str, slot: Any, shortcut: Any = None,
            checkable: bool = False) -> QAction:
    action = QAction(text, window)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    action.setCheckable(checkable)
    action.triggered.connect(slot)
    menu.addAction(action)
    return action


def build_menus(w: QMainWindow, panels: PanelGrid, do: MenuCallbacks) -> Menus:
    """File, View, Analysis, Models and Help menus and the main toolbar of ``w``."""
    bar = w.menuBar()
    file_menu = bar.addMenu("&File")
    _action(w, file_menu, "&Open files…", do.open_files, QKeySequence.StandardKey.Open)
    _action(w, file_menu, "Open &folder…", do.open_folder)
    _action(w, file_menu, "Open planes as &z-stack…", lambda: do.open_stack())
    recent_menu = file_menu.addMenu("Open &recent")
    file_menu.addSeparator()
    export_action = _action(w, file_menu, "&Export result…", lambda: do.export(), "Ctrl+E")
    _action(w, file_menu, "Choose export folder…", lambda: do.choose_export_folder())
    batch_export_action = _action(w, file_menu, "&Batch export…", lambda: do.batch_export(), "Ctrl+B")
    batch_export_action.setObjectName("batch_export_action")
    watch_action = _action(w, file_menu, "&Watch folder…", lambda: do.watch_folder())
    watch_action.setObjectName("watch_folder_action")
    watch_action.setToolTip("Predict each image the microscope writes into a folder as soon as it is complete")
    file_menu.addSeparator()
    _action(w, file_menu, "&Quit", w.close, QKeySequence.StandardKey.Quit)

    view = bar.addMenu("&View")
    max_projection_action = _action(w, view, "&Max projection", panels.set_max_projection, "Ctrl+M", True)
    panels.max_projection_box.toggled.connect(max_projection_action.setChecked)
    overlay_action = _action(w, view, "&Overlay prediction on input", panels.set_overlay, "Ctrl+L", True)
    panels.overlayChanged.connect(overlay_action.setChecked)  # one state: the panels'
    layout_menu = view.addMenu("Panel &layout")
    group = QActionGroup(w)
    for text, columns in (("Automatic", None), ("In a row", 4), ("2 × 2 grid", 2)):
        action = _action(w, layout_menu, text, lambda _=False, c=columns: panels.arrange(c), None, True)
        action.setChecked(columns is None)
        group.addAction(action)
    _action(w, view, "&Auto-contrast all panels", panels.auto_contrast_all, "Ctrl+A")
    _action(w, view, "&Reset zoom", lambda: panels.input_panel.view_box.autoRange(padding=0.0), "Ctrl+0")
    show_x0_action = _action(w, view, "Denoising shows predicted clean image", do.show_x0, None, True)
    for action in do.view_actions:
        view.addAction(action)

    analysis = bar.addMenu("&Analysis")
    compare_action = _action(w, analysis, "&Compare with ground truth…", lambda: do.compare(), "Ctrl+G")

    models = bar.addMenu("&Models")
    _action(w, models, "&Manage models…", do.manage_models)
    _action(w, models, "Model &card…", lambda: do.model_card())
    train_action = _action(w, models, "&Train a model…", lambda: do.train())
    improve_action = _action(w, models, "&Improve for my images…", lambda: do.improve())
    improve_action.setToolTip("Fine-tune the model of the shown result on this image (Quick fine-tune), "
                              "then run the new model on it")

    help_menu = bar.addMenu("&Help")
    self_test_action = _action(w, help_menu, "&Self-test…", lambda: do.self_test())
    _action(w, help_menu, "&About LabelFree", do.about)

    toolbar = w.addToolBar("Main")
    toolbar.setObjectName("main_toolbar")
    toolbar.setMovable(False)
    toolbar.addAction("Open…", do.open_files)
    toolbar.addAction("Run", do.run).setShortcut(QKeySequence("Ctrl+R"))
    toolbar.addAction("Cancel", do.cancel).setShortcut(QKeySequence(Qt.Key.Key_Escape))
    toolbar.addSeparator()
    toolbar.addAction(overlay_action)
    toolbar.addAction(compare_action)
    toolbar.addAction(export_action)
    return Menus(recent_menu, export_action, batch_export_action, watch_action, max_projection_action,
                 overlay_action, show_x0_action, compare_action, train_action, self_test_action, improve_action)


def fill_recent_menu(menu: QMenu, recent: Sequence[str], open_path: Callable[[Path], Any]) -> None:
    """File ▸ Open recent: one entry a file (its name, the whole path as tooltip); off when empty."""
    menu.clear()
    for text in recent:
        action = menu.addAction(Path(text).name)
        action.setToolTip(text)
        action.triggered.connect(lambda _=False, p=text: open_path(Path(p)))
    menu.setEnabled(bool(recent))
