"""Paired images for the Train page: dropped, paired, checked on a worker thread, previewed.

Pairs are named by dropping files or folders on the input and target lists (matched by name), or
multi-channel files with an input and a target channel. Every change re-checks the pairs on a
worker thread (files exist, readable, same size) and previews the first few side by side; a
problem is said in one sentence (``problem``) and ``checked(False)`` is emitted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
                               QHeaderView, QLabel, QListWidget, QPushButton, QStackedWidget, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from labelfree_app.gui.files.drops import FileDrops
from labelfree_app.gui.train.preview import PairPreview
from labelfree_app.gui.worker import call_in_thread

PAIRED, MULTICHANNEL = 0, 1


class DropList(FileDrops, QListWidget):
    """A list of paths that accepts dropped files and folders."""

    changed = Signal()

    def __init__(self, hint: str) -> None:
        super().__init__()
        self.setAcceptDrops(True)
        self.setToolTip(hint)
        self.setMinimumHeight(70)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # the file name at the end stays in view

    def paths(self) -> list[Path]:
        return [Path(self.item(i).text()) for i in range(self.count())]

    def add_paths(self, paths: Sequence[Path | str]) -> None:
        present = set(self.paths())
        for path in (Path(p) for p in paths):
            if path not in present:
                self.addItem(str(path))
                present.add(path)
        self.changed.emit()

    def clear_paths(self) -> None:
        self.clear()
        self.changed.emit()

    def files_dropped(self, paths: list[Path]) -> None:
        self.add_paths(paths)

def _list_box(title: str, drop_list: DropList) -> QGroupBox:
    box = QGroupBox(title)
    add, clear = QPushButton("Add…"), QPushButton("Clear")
    add.clicked.connect(lambda: drop_list.add_paths(QFileDialog.getOpenFileNames(
        box, title, "", "Images (*.tif *.tiff *.png);;Pairs CSV (*.csv);;All files (*)")[0]))
    clear.clicked.connect(drop_list.clear_paths)
    row = QHBoxLayout()
    row.addWidget(add)
    row.addWidget(clear)
    row.addStretch(1)
    layout = QVBoxLayout(box)
    layout.addWidget(drop_list)
    layout.addLayout(row)
    return box


class PairsBox(QGroupBox):
    """"1. Paired images": the lists, the checked pairs table (with Validation ticks) and the preview."""

    checked = Signal(bool)  # after each check: True when every pair can be trained on

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("1. Paired images", parent)
        self.pairs: list[Any] = []  # CheckedPair values of the last successful check
        self.problem = "Add paired images: drop files or folders on the two lists."
        self.checking = False
        self._serial = 0
        self.preferred_channels: tuple[int, int | None] | None = None  # (input, target) to pick when read
        self._build()
        self._show_problem(self.problem)

    def _build(self) -> None:
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(["Input and target files", "Multi-channel files (both channels in each file)"])
        self.input_list = DropList("Transmitted-light images: drop files or a folder (or a pairs CSV)")
        self.target_list = DropList("Fluorescence images with the same names: drop files or a folder")
        self.multi_list = DropList("Files holding both the transmitted-light and the fluorescence channel")
        self.input_channel_combo, self.target_channel_combo = QComboBox(), QComboBox()
        paired = QWidget()
        paired_row = QHBoxLayout(paired)
        paired_row.setContentsMargins(0, 0, 0, 0)
        paired_row.addWidget(_list_box("Transmitted light (input)", self.input_list))
        paired_row.addWidget(_list_box("Fluorescence (target)", self.target_list))
        multi = QWidget()
        multi_layout = QFormLayout(multi)
        multi_layout.setContentsMargins(0, 0, 0, 0)
        multi_layout.addRow(_list_box("Multi-channel files", self.multi_list))
        multi_layout.addRow("Input channel:", self.input_channel_combo)
        multi_layout.addRow("Target channel:", self.target_channel_combo)
        self.sources = QStackedWidget()
        self.sources.addWidget(paired)
        self.sources.addWidget(multi)
        self.sources.setMaximumHeight(170)

        self.pair_table = QTableWidget(0, 4)
        self.pair_table.setHorizontalHeaderLabels(["Input", "Target", "Size", "Validation"])
        self.pair_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.pair_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.pair_table.verticalHeader().setVisible(False)
        self.pair_table.setToolTip("Tick a pair's Validation box to hold the whole pair out for validation")
        self.pair_table.setMaximumHeight(120)
        self.preview = PairPreview()
        self.pair_table.currentCellChanged.connect(  # the pair picked in the table, large
            lambda row, *_: self.preview.show_pairs(self.pairs[row:row + 1]) if 0 <= row < len(self.pairs) else None)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QVBoxLayout(self)
        layout.addWidget(self.mode_combo)
        layout.addWidget(self.sources)
        layout.addWidget(self.pair_table)
        layout.addWidget(self.preview, 1)
        layout.addWidget(self.status_label)

        self.mode_combo.currentIndexChanged.connect(self.sources.setCurrentIndex)
        self.mode_combo.currentIndexChanged.connect(self.recheck)
        for drop_list in (self.input_list, self.target_list):
            drop_list.changed.connect(self.recheck)
        self.multi_list.changed.connect(self._read_channel_names)
        self.input_channel_combo.currentIndexChanged.connect(self.recheck)
        self.target_channel_combo.currentIndexChanged.connect(self.recheck)

    # --- multi-channel files --------------------------------------------------------------
    def _read_channel_names(self) -> None:
        files = self.multi_list.paths()
        if not files:
            self._fill_channels([])
            self.recheck()
            return
        serial = self._begin_check()

        def names() -> list[str]:
            from labelfree_app.training.pair_check import channel_names
            from labelfree_app.training.pair_sources import image_files

            return channel_names((image_files(files) or files)[0])

        def got(found: list[str]) -> None:
            if serial == self._serial:
                self._fill_channels(found)
                self.recheck()

        call_in_thread(names, got, lambda exc: self._check_failed(serial, exc))

    def _fill_channels(self, names: Sequence[str]) -> None:
        """Fill both pickers; the input guess is a transmitted-light name, the target another channel."""
        bright = next((i for i, n in enumerate(names)
                       if any(k in n.lower() for k in ("bright", "phase", "dic", "trans"))), 0)
        target = next((i for i in range(len(names)) if i != bright), -1)
        wanted = self.preferred_channels
        if wanted is not None and 0 <= wanted[0] < len(names):
            bright = wanted[0]
            if wanted[1] is not None and 0 <= wanted[1] < len(names) and wanted[1] != bright:
                target = wanted[1]
            elif target == bright or target < 0:
                target = next((i for i in range(len(names)) if i != bright), -1)
        for combo, chosen in ((self.input_channel_combo, bright), (self.target_channel_combo, target)):
            combo.blockSignals(True)
            combo.clear()
            for index, name in enumerate(names):
                combo.addItem(name, index)
            combo.setCurrentIndex(chosen if names else -1)
            combo.blockSignals(False)

    def use_multichannel_file(self, path: Path, input_channel: int, target_channel: int | None) -> None:
        """Train on the channels of one file: these input and target channels are picked once read."""
        self.preferred_channels = (int(input_channel), target_channel)
        for drop_list in (self.input_list, self.target_list, self.multi_list):
            drop_list.clear()
        self.mode_combo.setCurrentIndex(MULTICHANNEL)
        self.multi_list.add_paths([path])

    def use_input_file(self, path: Path) -> None:
        """Put one transmitted-light file on the input list; its fluorescence image is still to add."""
        self.preferred_channels = None
        for drop_list in (self.input_list, self.target_list, self.multi_list):
            drop_list.clear()
        self.mode_combo.setCurrentIndex(PAIRED)
        self.input_list.add_paths([path])

    # --- checking -------------------------------------------------------------------------
    def _begin_check(self) -> int:
        self._serial += 1
        self.checking = True
        self.pairs = []
        self.status_label.setText("Checking the pairs…")
        self.status_label.setStyleSheet("")
        self.checked.emit(False)
        return self._serial

    def recheck(self, *_: Any) -> None:
        """Name the pairs from the lists and check them on a worker thread."""
        serial = self._begin_check()
        mode = self.mode_combo.currentIndex()
        inputs, targets, multi = self.input_list.paths(), self.target_list.paths(), self.multi_list.paths()
        channels = (self.input_channel_combo.currentData(), self.target_channel_combo.currentData())

        def work() -> tuple[list[Any], str]:
            from labelfree_app.errors import TrainingDataError
            from labelfree_app.training.datasets import pairs_from_multichannel
            from labelfree_app.training.pair_check import check_pairs
            from labelfree_app.training.pair_sources import image_files, pairs_from_files

            if mode == MULTICHANNEL:
                if not multi:
                    raise TrainingDataError("Add multi-channel files: drop files or a folder on the list.")
                if channels[0] is None or channels[1] is None or channels[0] == channels[1]:
                    raise TrainingDataError("Pick two different channels: the transmitted-light input and the target.")
                specs, how = pairs_from_multichannel(image_files(multi), input_channel=channels[0],
                                                     target_channel=channels[1]), "from multi-channel files"
            else:
                specs, how = pairs_from_files(inputs, targets)
            return check_pairs(specs), how

        call_in_thread(work, lambda found: self._check_done(serial, *found), lambda exc: self._check_failed(serial, exc))

    def _check_done(self, serial: int, pairs: list[Any], how: str) -> None:
        if serial != self._serial:
            return  # a newer check is running
        self.checking = False
        self.pairs = list(pairs)
        self._fill_table()
        self.preview.show_pairs(self.pairs)
        self.problem = ""
        sizes = ", ".join(sorted({p.describe_size() for p in self.pairs}))
        self.status_label.setText(f"{len(self.pairs)} pair(s) ready, paired {how}: {sizes}. "
                                  "Check in the overlay that each target lies on its input.")
        self.checked.emit(True)

    def _check_failed(self, serial: int, exc: BaseException) -> None:
        if serial != self._serial:
            return
        from labelfree_app.errors import LabelFreeError

        self.checking = False
        self.pairs = []
        self._fill_table()
        self.preview.show_pairs([])
        self._show_problem(str(exc) if isinstance(exc, LabelFreeError) else f"The pairs could not be read ({exc}).")
        self.checked.emit(False)

    def _show_problem(self, text: str) -> None:
        self.problem = text
        self.status_label.setText(text)
        self.status_label.setStyleSheet("color: #b00020")

    def _fill_table(self) -> None:
        self.pair_table.setRowCount(len(self.pairs))
        for row, pair in enumerate(self.pairs):
            for col, text in enumerate((Path(str(pair.spec.input)).name, Path(pair.spec.target).name,
                                        pair.describe_size())):
                item = QTableWidgetItem(text)
                item.setToolTip(f"{pair.spec.describe_input()} → {pair.spec.target}")
                self.pair_table.setItem(row, col, item)
            tick = QTableWidgetItem("")
            tick.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            tick.setCheckState(Qt.CheckState.Unchecked)
            self.pair_table.setItem(row, 3, tick)

    # --- validation ticks -----------------------------------------------------------------
    def set_validation_rows(self, rows: Sequence[int]) -> None:
        for row in range(self.pair_table.rowCount()):
            state = Qt.CheckState.Checked if row in rows else Qt.CheckState.Unchecked
            self.pair_table.item(row, 3).setCheckState(state)

    def validation_rows(self) -> list[int]:
        return [row for row in range(self.pair_table.rowCount())
                if self.pair_table.item(row, 3).checkState() == Qt.CheckState.Checked]
