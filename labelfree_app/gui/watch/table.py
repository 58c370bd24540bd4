"""The watch dialog's table: one row per arrived file (× model) in arrival order, with its status.

A file is *settling* while it is still being written, *predicting* with the job's progress, then
*done*, *skipped* (a restart found its outputs), *failed* with its sentence, or *cancelled*.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from labelfree_app.gui.trust_levels import NOT_ESTIMATED, interval_text, level_colour

COLUMNS = ("Input", "Model", "Status", "Seconds", "Trust", "Reason")
INPUT, MODEL, STATUS, SECONDS, TRUST, REASON = range(len(COLUMNS))
SETTLING, PREDICTING, NOT_YET = "settling", "predicting", "not yet predicted"
FAILED_COLOUR = QColor(255, 220, 220)

Key = tuple[str, str]  # (input path, model id; "" while the file settles)


class ArrivalTable(QTableWidget):
    """The files of one watch; rows are found by (input path, model id)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(COLUMNS)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.horizontalHeader()
        for column in (INPUT, MODEL, STATUS, SECONDS, TRUST):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(REASON, QHeaderView.ResizeMode.Stretch)  # a failure's sentence: whole in its tip
        self.verticalHeader().setVisible(False)
        self.folder: Path | None = None
        self.keys: list[Key] = []

    def reset(self, folder: Path) -> None:
        """Empty the table for a watch of ``folder`` (names are shown relative to it)."""
        self.folder = Path(folder)
        self.keys = []
        self.setRowCount(0)

    def statuses(self) -> dict[str, int]:
        """How many rows have each status ("predicting 3/9 tiles" counts as predicting)."""
        counts: dict[str, int] = {}
        for row in range(self.rowCount()):
            status = self.item(row, STATUS).text()
            status = PREDICTING if status.startswith(PREDICTING) else status
            counts[status] = counts.get(status, 0) + 1
        return counts

    # --- events ---------------------------------------------------------------------------
    def show_settling(self, paths: Sequence[Path]) -> None:
        """The files still being written: new ones join at the end; a settling row whose file is no
        longer listed went away (the watch lists every unsettled file when it waits)."""
        listed = [str(p) for p in paths]
        for key in [k for k in self.keys if k[1] == "" and k[0] not in listed]:
            self._remove(key)
        for path in listed:
            if (path, "") not in self.keys:
                self._set((path, ""), {STATUS: SETTLING})

    def show_started(self, path: str, model: str) -> None:
        key = self._claim(path, model)
        self._set(key, {MODEL: model, STATUS: PREDICTING, SECONDS: "", TRUST: "", REASON: ""}, failed=False)

    def show_progress(self, path: str, model: str, done: int, total: int, stage: str) -> None:
        self._set((path, model), {STATUS: f"{PREDICTING} {done}/{total} {stage}".rstrip()})

    def show_row(self, row: Any) -> None:
        """A job's report row: its status, time, trust and reason (a failure's sentence)."""
        trust = row.trust_estimate() if row.ok else None  # a skipped row keeps its first run's estimate
        trust_text = f"{trust.level}: {interval_text(trust)}" if trust is not None else (
            NOT_ESTIMATED if row.status == "done" else "")
        key = self._claim(row.input, row.model)
        self._set(key, {MODEL: row.model, STATUS: row.status, SECONDS: f"{row.seconds:.1f}", TRUST: trust_text,
                        REASON: row.error or row.note}, failed=row.status == "failed",
                  tip=row.error or row.note or (f"{trust.reason} {trust.advice}".strip() if trust else ""))
        if trust is not None:
            self.item(self.keys.index(key), TRUST).setForeground(QBrush(QColor(level_colour(trust.level))))

    def show_stopped(self, rows: Sequence[Any]) -> None:
        """The watch ended: jobs it ended without a finished row (cancelled) take their report row;
        files still settling are not yet predicted (a new watch takes them)."""
        for row in rows:
            if (row.input, row.model) in self.keys and row.status == "cancelled":
                self.show_row(row)
        for index, key in enumerate(self.keys):
            if self.item(index, STATUS).text() == SETTLING:
                self.item(index, STATUS).setText(NOT_YET)

    # --- rows -----------------------------------------------------------------------------
    def _set(self, key: Key, values: dict[int, str], *, failed: bool | None = None, tip: str = "") -> None:
        if key not in self.keys:
            self.keys.append(key)
            index = self.rowCount()
            self.insertRow(index)
            for column in range(len(COLUMNS)):
                self.setItem(index, column, QTableWidgetItem(""))
            self.item(index, INPUT).setText(self._name(key[0]))
            self.item(index, INPUT).setToolTip(key[0])
            self.scrollToBottom()
        index = self.keys.index(key)
        for column, text in values.items():
            self.item(index, column).setText(text)
            if column != INPUT:
                self.item(index, column).setToolTip(tip or text)
        if failed is not None:
            brush = QBrush(FAILED_COLOUR) if failed else QBrush()
            for column in range(len(COLUMNS)):
                self.item(index, column).setBackground(brush)

    def _claim(self, path: str, model: str) -> Key:
        """The row of ``path`` × ``model``: a settled file's row becomes its job's (a file predicted
        before and written again keeps its first row)."""
        key, settled = (path, model), (path, "")
        if settled in self.keys:
            if key in self.keys:
                self._remove(settled)
            else:
                self.keys[self.keys.index(settled)] = key
        return key

    def _remove(self, key: Key) -> None:
        self.removeRow(self.keys.index(key))
        self.keys.remove(key)

    def _name(self, path: str) -> str:
        try:
            return str(Path(path).relative_to(self.folder)) if self.folder is not None else Path(path).name
        except ValueError:
            return Path(path).name
