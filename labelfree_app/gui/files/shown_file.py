"""What names the shown file outside the panels: the window title, the values under the cursor, the
status bar and the Run panel's last-run line follow the file shown, never the one shown before it."""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtWidgets import QLabel, QMainWindow

from labelfree_app.gui.files.file_list import FAILED, OpenFile
from labelfree_app.gui.predict.run_controls import RunControls


def status_of(record: OpenFile | None) -> str:
    """One sentence about ``record`` for the status bar when it is shown ('' for none)."""
    if record is None:
        return ""
    if record.state == FAILED:
        return record.extra.get("last_error") or f"{record.name} could not be read; hover it in the list to see why."
    if record.image is None:
        return f"Reading {record.name}…"
    result = record.result
    if result is None:
        return f"{record.name}: not predicted yet; press Run."
    return f"{record.name}: predicted with {result.model_id} in {result.seconds:.1f} s."


class ShownFile:
    """Keeps the window's words about the shown file in step with it (``show`` on every file shown)."""

    def __init__(self, window: QMainWindow, hover: QLabel, controls: RunControls,
                 is_running: Callable[[], bool]) -> None:
        self.window = window
        self.hover = hover
        self.controls = controls
        self.is_running = is_running
        self.record: OpenFile | None = None
        self._said = ""  # the last status sentence this put up (a newer one from elsewhere stays)

    def show(self, record: OpenFile | None) -> None:
        """``record`` is shown now (maybe again, e.g. once it has been read)."""
        status = self.window.statusBar()
        changed = record is not self.record
        self.record = record
        self.window.setWindowTitle(f"LabelFree — {record.name}" if record is not None else "LabelFree")
        if changed:
            self.hover.clear()  # the values under the cursor were the previous file's
        if changed or status.currentMessage() == self._said:
            self._said = status_of(record)
            status.showMessage(self._said)
        if not self.is_running():  # a run's own progress stays up while it runs
            result: Any = record.result if record is not None else None
            self.controls.show_file_state(getattr(result, "seconds", None) if result is not None else None)
