"""The list of opened files, each with its state (loading, loaded, predicting, done, failed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QPoint, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QKeyEvent
from PySide6.QtWidgets import QAbstractItemView, QListWidget, QListWidgetItem, QMenu, QWidget

from labelfree_app.gui.trust_levels import interval_text, level_colour, trust_of

LOADING, LOADED, PREDICTING, DONE, FAILED = "loading", "loaded", "predicting", "done", "failed"

_STATE_COLOURS = {
    LOADING: QColor(140, 140, 140),
    LOADED: QColor(60, 110, 200),
    PREDICTING: QColor(210, 140, 0),
    DONE: QColor(30, 150, 60),
    FAILED: QColor(200, 40, 40),
}


# The handles between the Files / panels / Run columns: a visible, grabbable bar, not a blank strip.
DOCK_SEPARATOR_STYLE = ("QMainWindow::separator { background: palette(mid); width: 6px; height: 6px; }"
                        "QMainWindow::separator:hover { background: palette(highlight); }")

IMAGE_FILTER = "Images (*.tif *.tiff *.png);;All files (*)"  # for the Open dialogs


@dataclass
class OpenFile:
    """One opened file: its image once read, the chosen input channel, and its last result."""

    path: Path
    state: str = LOADING
    reason: str = ""
    image: Any = None
    channel: int = 0
    result: Any = None
    ground_truth: Any = None  # (Z, Y, X) array from a dropped file, if any
    extra: dict[str, Any] = field(default_factory=dict)
    label: str = ""  # shown instead of the file name (a z-stack of plane files)

    @property
    def name(self) -> str:
        return self.label or self.path.name


class FileList(QListWidget):
    """Shows ``OpenFile`` records; ``currentFileChanged(OpenFile | None)`` when the selection moves."""

    currentFileChanged = Signal(object)
    filesRemoved = Signal(list)  # the OpenFile records taken off the list

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.files: list[OpenFile] = []
        self.setToolTip("Opened files; hover a failed file to see why, a predicted one for how far to trust it")
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        # Elide long names in the middle instead of scrolling, so each file's state stays in view.
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setMinimumWidth(260)  # a name and its state ("… — done · good") stay readable
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._show_menu)
        self.currentRowChanged.connect(self._on_row_changed)

    def add(self, path: Path, label: str = "") -> OpenFile:
        """Add ``path`` (or return the existing record when it is already in the list)."""
        for record in self.files:
            if record.path == path:
                return record
        record = OpenFile(path=path, label=label)
        self.files.append(record)
        self.addItem(QListWidgetItem(record.name))
        self.refresh(record)
        return record

    def index_of(self, record: OpenFile) -> int:
        for index, candidate in enumerate(self.files):
            if candidate is record:
                return index
        return -1

    def find(self, path: Path) -> OpenFile | None:
        return next((r for r in self.files if r.path == path), None)

    def set_state(self, record: OpenFile, state: str, reason: str = "") -> None:
        record.state = state
        record.reason = reason
        self.refresh(record)

    def refresh(self, record: OpenFile) -> None:
        row = self.index_of(record)
        if row < 0:
            return
        item = self.item(row)
        trust = trust_of(record.result) if record.state == DONE else None
        state = f"{record.state} · {trust.level}" if trust is not None else record.state
        item.setText(f"{record.name}  —  {state}")
        colour = QColor(level_colour(trust.level)) if trust is not None else _STATE_COLOURS.get(record.state)
        item.setForeground(QBrush(colour or QColor(0, 0, 0)))
        planes = record.extra.get("plane_paths")
        tip = f"{len(planes)} planes: {planes[0]} … {Path(planes[-1]).name}" if planes else str(record.path)
        if record.reason:
            tip += f"\n{record.reason}"
        if trust is not None:
            tip += f"\n{record.result.model_id}: {interval_text(trust)}, {trust.level}. {trust.reason}"
        item.setToolTip(tip)
        item.setData(Qt.ItemDataRole.UserRole, record.state)

    def current(self) -> OpenFile | None:
        row = self.currentRow()
        return self.files[row] if 0 <= row < len(self.files) else None

    def select(self, record: OpenFile) -> None:
        row = self.index_of(record)
        if row >= 0:
            self.setCurrentRow(row)

    def _on_row_changed(self, row: int) -> None:
        self.currentFileChanged.emit(self.files[row] if 0 <= row < len(self.files) else None)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        """Wide enough for "demo_phase_neurons.ome.tif — done · good" (the dock starts at this width)."""
        return QSize(300, super().sizeHint().height())

    # --- removing files -------------------------------------------------------------------
    def selected_files(self) -> list[OpenFile]:
        rows = sorted({self.row(item) for item in self.selectedItems()})
        return [self.files[row] for row in rows if 0 <= row < len(self.files)]

    def remove(self, records: list[OpenFile]) -> list[OpenFile]:
        """Take ``records`` off the list (never one being predicted); returns those removed. The
        next file (or none) is shown; nothing on disk is touched."""
        removed = [r for r in records if r.state != PREDICTING and self.index_of(r) >= 0]
        if not removed:
            return []
        self.blockSignals(True)
        for record in removed:
            row = self.index_of(record)
            self.takeItem(row)
            del self.files[row]
        self.blockSignals(False)
        self.filesRemoved.emit(removed)
        self.currentFileChanged.emit(self.current())
        return removed

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and self.selected_files():
            self.remove(self.selected_files())
            return
        super().keyPressEvent(event)

    def _show_menu(self, pos: QPoint) -> None:
        self.remove_menu().exec(self.viewport().mapToGlobal(pos))

    def remove_menu(self) -> QMenu:
        """The list's context menu: remove the selected files, or all (files being predicted stay)."""
        menu = QMenu(self)
        chosen = self.selected_files()
        one = menu.addAction(f"Remove {'this file' if len(chosen) == 1 else f'{len(chosen)} files'} from the list")
        one.setShortcut(Qt.Key.Key_Delete)
        one.setEnabled(any(r.state != PREDICTING for r in chosen))
        one.triggered.connect(lambda: self.remove(self.selected_files()))
        every = menu.addAction("Remove all files from the list")
        every.setEnabled(any(r.state != PREDICTING for r in self.files))
        every.triggered.connect(lambda: self.remove(list(self.files)))
        return menu
