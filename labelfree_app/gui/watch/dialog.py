"""File ▸ Watch folder…: predict each image the microscope writes into a folder, once it is complete.

The same watch as ``labelfree watch``: files are taken in arrival order once their size and
modification time have settled (temporary names are never read), the batch report is kept current,
and a restart skips finished files. Each new prediction can be shown in the window as it lands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QDialog, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
                               QLabel, QPushButton, QVBoxLayout, QWidget)

from labelfree_app.gui.dialogs import ModelChecklist, folder_row
from labelfree_app.gui.open_folder import Opener, reveal_folder
from labelfree_app.gui.settings import GuiSettings
from labelfree_app.gui.watch.table import SETTLING, ArrivalTable
from labelfree_app.gui.watch.worker import WatchWorker

# batch.watch.DEFAULT_SETTLE_S (the window does not import the batch package until it runs; a test
# keeps the two equal)
DEFAULT_SETTLE_S = 2.0
SHOWN_COUNTS = ("done", "skipped", "failed", "cancelled")


def status_line(folder: str, counts: dict[str, int], settling: int, current: str = "") -> str:
    """"Watching X: 3 done, 1 failed, predicting c.tif (4/9 tiles), 1 settling…"."""
    parts = [f"{counts[status]} {status}" for status in SHOWN_COUNTS if counts.get(status)]
    if current:
        parts.append(f"predicting {current}")
    if settling:
        parts.append(f"{settling} settling")
    return f"Watching {folder}: " + (", ".join(parts) + "…" if parts else "waiting for images…")


class WatchDialog(QDialog):
    """Choose a folder, an output folder and models; Start; see each file arrive and be predicted."""

    watchStarted = Signal()
    predictionLanded = Signal(object, object)  # input Path, SavedResult (when "Show each new prediction")
    watchFinished = Signal(object)  # batch.watch.WatchStopped, or None when the watch could not start or failed

    def __init__(self, backend: Any, models: Sequence[Any], *, settings: dict[str, Any] | None = None,
                 selected_model: str | None = None, folder: str = "", out_dir: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Watch folder")
        self.setObjectName("watch_dialog")
        self.resize(820, 560)
        self.backend = backend
        self.settings = dict(settings or {})
        self.worker: WatchWorker | None = None
        self.opener: Opener | None = None  # QDesktopServices.openUrl unless a test sets one
        self.last_stopped: Any = None
        self._settling = 0
        self._current = ""
        self._problem = ""
        self._build(models, selected_model)
        self.folder_edit.setText(folder)
        self.out_edit.setText(out_dir)
        self._set_running(False)

    # --- layout ---------------------------------------------------------------------------
    def _build(self, models: Sequence[Any], selected_model: str | None) -> None:
        self.folder_edit, folder_row_ = folder_row("The folder the microscope writes into",
                                                   lambda: self._choose(self.folder_edit, "Folder to watch"))
        self.out_edit, out_row = folder_row("Output folder (a sub-folder of the watched one is fine)",
                                            lambda: self._choose(self.out_edit, "Output folder"))
        self.settle_spin = QDoubleSpinBox()
        self.settle_spin.setRange(0.2, 600.0)
        self.settle_spin.setDecimals(1)
        self.settle_spin.setSuffix(" s")
        self.settle_spin.setValue(DEFAULT_SETTLE_S)
        self.settle_spin.setToolTip("A file is taken once its size and modification time have not changed for "
                                    "this long; names such as .part or .tmp are never read")
        self.show_box = QCheckBox("Show each new prediction in the window")
        self.show_box.setChecked(True)
        form = QFormLayout()
        form.addRow("Watch folder:", folder_row_)
        form.addRow("Output folder:", out_row)
        form.addRow("Complete after unchanged for:", self.settle_spin)
        form.addRow("", self.show_box)

        self.model_list = ModelChecklist(models, [selected_model] if selected_model else [])
        self.model_list.setMaximumHeight(110)
        models_box = QGroupBox("Models (tick one or more)")
        QVBoxLayout(models_box).addWidget(self.model_list)

        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.table = ArrivalTable()

        self.start_button = QPushButton("Start watching")
        self.start_button.setDefault(True)
        self.stop_button = QPushButton("Stop after this file")
        self.cancel_button = QPushButton("Cancel now")
        self.cancel_button.setToolTip("Stop at once: the file being predicted is abandoned (nothing is written for it)")
        self.open_button = QPushButton("Open output folder")
        close_button = QPushButton("Close")
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop_after_current)
        self.cancel_button.clicked.connect(self.cancel)
        self.open_button.clicked.connect(self.open_output_folder)
        close_button.clicked.connect(self.close)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.stop_button, self.cancel_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.open_button)
        buttons.addWidget(close_button)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(models_box)
        layout.addWidget(self.status_label)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)

    def _choose(self, edit: Any, title: str) -> None:
        folder = QFileDialog.getExistingDirectory(self, title, edit.text())
        if folder:
            edit.setText(folder)

    # --- running --------------------------------------------------------------------------
    def folder(self) -> Path:
        return Path(self.folder_edit.text().strip())

    def out_dir(self) -> Path:
        return Path(self.out_edit.text().strip())

    def problem(self) -> str:
        """What stops the watch from starting, as one sentence ("" when it can start)."""
        if not self.folder_edit.text().strip():
            return "Choose the folder to watch (the one the microscope writes into)."
        if not self.out_edit.text().strip():
            return "Choose an output folder."
        if not self.model_list.checked():
            return "Tick at least one model."
        if self.out_dir().resolve() == self.folder().resolve():
            return "The output folder cannot be the watched folder itself; choose another (a sub-folder is fine)."
        return ""

    def start(self) -> bool:
        reason = "The folder is already being watched." if self.is_running() else self.problem()
        if reason:
            self.status_label.setText(reason)
            return False
        self.table.reset(self.folder())
        self.last_stopped = None
        self._settling, self._current, self._problem = 0, "", ""
        self.status_label.setText(f"Starting to watch {self.folder()}… (loading models)")
        self.worker = WatchWorker(self.backend, self.folder(), self.model_list.checked(), self.out_dir(),
                                  self.settings, settle_s=self.settle_spin.value())
        self.worker.waiting.connect(self._on_waiting)
        self.worker.jobStarted.connect(self._on_job_started)
        self.worker.jobProgress.connect(self._on_job_progress)
        self.worker.jobFinished.connect(self._on_job_finished)
        self.worker.watchStopped.connect(self._on_stopped)
        self.worker.errored.connect(self._on_error)
        self.worker.thread.finished.connect(self._on_thread_finished)
        self._set_running(True)
        self.worker.start()
        self.watchStarted.emit()
        return True

    def is_running(self) -> bool:
        return self.worker is not None and self.worker.is_running()

    def stop_after_current(self) -> None:
        if self.is_running():
            self.worker.stop_after_current()
            self.status_label.setText("Stopping after the current file…")

    def cancel(self) -> None:
        if self.is_running():
            self.worker.cancel()
            self.status_label.setText("Cancelling…")

    def wait(self, ms: int = 10000) -> bool:
        return self.worker.wait(ms) if self.worker is not None else True

    def open_output_folder(self) -> None:
        reveal_folder(self.out_dir(), self.status_label.setText, self.opener)

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.cancel_button.setEnabled(running)
        for widget in (self.folder_edit, self.out_edit, self.settle_spin, self.model_list):
            widget.setEnabled(not running)

    def _show_status(self) -> None:
        if self.worker is not None and self.worker.stopping:
            return  # "Stopping…" stays until the watch has stopped
        text = status_line(str(self.folder()), self.table.statuses(), self._settling, self._current)
        self.status_label.setText(f"{text} {self._problem} Still watching." if self._problem else text)

    def _on_thread_finished(self) -> None:
        if not self.is_running():  # a finished old thread must not unlock a newer watch
            self._set_running(False)

    def _on_waiting(self, waiting: Any) -> None:
        self._settling, self._current, self._problem = waiting.settling, "", waiting.problem
        self.table.show_settling(waiting.files)
        self._show_status()

    def _on_job_started(self, path: str, model: str) -> None:
        self.table.show_started(path, model)
        self._current = Path(path).name
        self._settling = max(0, self.table.statuses().get(SETTLING, 0))
        self._show_status()

    def _on_job_progress(self, path: str, model: str, done: int, total: int, stage: str) -> None:
        self.table.show_progress(path, model, done, total, stage)
        self._current = f"{Path(path).name} ({done}/{total} {stage})".replace(" )", ")")
        self._show_status()

    def _on_job_finished(self, row: Any, landed: Any) -> None:
        self.table.show_row(row)
        self._current = ""
        self._show_status()
        if landed is not None and self.show_box.isChecked():
            self.predictionLanded.emit(Path(row.input), landed)

    def _on_stopped(self, stopped: Any) -> None:
        self.last_stopped = stopped
        self.table.show_stopped(stopped.rows)
        counts = self.table.statuses()
        summary = ", ".join(f"{counts[s]} {s}" for s in SHOWN_COUNTS if counts.get(s)) or "nothing predicted"
        report = f" Report: {stopped.report[0]}" if stopped.report else ""
        if stopped.fatal:
            self.status_label.setText(f"The watch stopped: {stopped.fatal} ({summary}).{report}")
        else:
            self.status_label.setText(f"Stopped watching {self.folder()} ({summary}); start again to go on: "
                                      f"finished files are skipped.{report}")
        self._set_running(False)
        self.watchFinished.emit(stopped)

    def _on_error(self, sentence: str, is_user_error: bool) -> None:
        self.status_label.setText(sentence if is_user_error else f"Unexpected error: {sentence}")
        self._set_running(False)
        self.watchFinished.emit(None)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt name)
        if self.is_running():
            self.cancel()
            self.wait(15000)
        super().closeEvent(event)


def open_watch_dialog(parent: QWidget, backend: Any, models: Sequence[Any], controls: Any, settings: GuiSettings,
                      dialogs: list[QWidget], show_landed: Callable[[Path, Any], Any]) -> WatchDialog:
    """Open the dialog with the window's model and settings and the folders last used; each prediction
    that lands goes to ``show_landed(input, SavedResult)`` while its box is ticked."""
    dialog = WatchDialog(backend, models, settings=controls.settings(), selected_model=controls.model_id(),
                         folder=settings.get("watch_folder") or "", out_dir=settings.get("watch_output_folder") or "",
                         parent=parent)

    def remember() -> None:
        settings.set("watch_folder", str(dialog.folder()))
        settings.set("watch_output_folder", str(dialog.out_dir()))

    dialog.watchStarted.connect(remember)
    dialog.predictionLanded.connect(show_landed)
    dialog.show()
    dialogs.append(dialog)
    return dialog
