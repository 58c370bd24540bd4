"""File ▸ Batch export: many files or folders × one or more models into an output folder.

The same batch as ``labelfree batch``: outputs are written atomically, finished ones are skipped
when run again, and ``batch_report.csv`` lists every input × model with its status and reason. The
prediction settings it runs with are shown and editable in the dialog (``settings_box``); the status
and the ETA move with each file's per-step progress (``progress.BatchClock``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QDialog, QFileDialog, QFormLayout, QGroupBox,
                               QHBoxLayout, QHeaderView, QLabel, QLineEdit, QListWidget,
                               QProgressBar, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from labelfree_app.gui.batch.progress import BatchClock
from labelfree_app.gui.batch.settings_box import BatchSettingsBox, window_settings
from labelfree_app.gui.batch.worker import BatchWorker
from labelfree_app.gui.dialogs import ModelChecklist, folder_row
from labelfree_app.gui.files.drops import FileDrops
from labelfree_app.gui.files.file_list import FileList
from labelfree_app.gui.models.labels import model_label
from labelfree_app.gui.open_folder import Opener, reveal_folder
from labelfree_app.gui.predict.run_controls import RunControls
from labelfree_app.gui.settings import GuiSettings

COLUMNS = ("Input", "Model", "Status", "Seconds", "Pearson r", "Reason")
FAILED_COLOUR = QColor(255, 220, 220)
TICK_MS = 1000  # the ETA counts down and the status line's seconds move between progress events


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA: estimating…"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"ETA: {hours} h {minutes:02d} min" if hours else f"ETA: {minutes} min {secs:02d} s"


class BatchDialog(FileDrops, QDialog):
    """Pick inputs, models and a folder; run; watch per-file and overall progress; read the results."""

    batchFinished = Signal(object)  # BatchDone, or None when the batch could not start

    def __init__(self, backend: Any, models: Sequence[Any], *, settings: dict[str, Any] | None = None,
                 selected_model: str | None = None, inputs: Sequence[Path] = (), out_dir: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Batch export")
        self.setObjectName("batch_dialog")
        self.setAcceptDrops(True)
        self.resize(900, 640)
        self.backend = backend
        self.settings = dict(settings or {})
        self.opener: Opener | None = None  # QDesktopServices.openUrl unless a test sets one
        self.model_names = {str(m.id): model_label(m) for m in models}  # the table names models, not ids
        self.worker: BatchWorker | None = None
        self.clock = BatchClock()
        self.ticker = QTimer(self)
        self.ticker.setInterval(TICK_MS)
        self.ticker.timeout.connect(self._tick)
        self.last_done: Any = None
        self._reported = False  # the running batch has sent its result (its thread may still be quitting)
        self._build(models, selected_model)
        self.add_inputs(inputs)
        self.out_edit.setText(out_dir)
        self._set_running(False)

    # --- layout ---------------------------------------------------------------------------
    def _build(self, models: Sequence[Any], selected_model: str | None) -> None:
        self.input_list = QListWidget()
        self.input_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.input_list.setToolTip("Files and folders to predict (folders are searched, sub-folders kept). "
                                   "Drop them here.")
        add_files, add_folder, remove = (QPushButton("Add files…"), QPushButton("Add folder…"),
                                         QPushButton("Remove"))
        add_files.clicked.connect(self._choose_files)
        add_folder.clicked.connect(self._choose_folder)
        remove.clicked.connect(self._remove_selected)
        input_buttons = QHBoxLayout()
        for button in (add_files, add_folder, remove):
            input_buttons.addWidget(button)
        input_buttons.addStretch(1)
        inputs_box = QGroupBox("Inputs (drop files or folders)")
        inputs_layout = QVBoxLayout(inputs_box)
        inputs_layout.addWidget(self.input_list)
        inputs_layout.addLayout(input_buttons)

        self.model_list = ModelChecklist(models, [selected_model] if selected_model else [])
        self.settings_box = BatchSettingsBox(self.settings)
        self.model_list.itemChanged.connect(lambda *_: self.settings_box.follow_models(models, self.checked_models))
        self.settings_box.follow_models(models, self.checked_models)
        models_box = QGroupBox("Models (tick one or more)")
        QVBoxLayout(models_box).addWidget(self.model_list)
        top = QHBoxLayout()
        top.addWidget(inputs_box, 3)
        top.addWidget(models_box, 2)

        self.out_edit, out_row = folder_row("Output folder", self._choose_out_dir)
        self.overwrite_box = QCheckBox("Redo outputs that already exist (otherwise they are skipped)")
        self.target_edit = QLineEdit()
        self.target_edit.setPlaceholderText("optional: a fluorescence channel in the inputs, e.g. DAPI, to report "
                                            "Pearson r against")
        form = QFormLayout()
        form.addRow("Output folder:", out_row)
        form.addRow("Score against channel:", self.target_edit)
        form.addRow("", self.overwrite_box)
        middle = QHBoxLayout()
        middle.addLayout(form, 3)
        middle.addWidget(self.settings_box, 2)

        self.job_label = QLabel("")
        self.job_bar = QProgressBar()
        self.overall_bar = QProgressBar()
        self.eta_label = QLabel("")
        self.summary_label = QLabel("")
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)

        self.start_button = QPushButton("Start")
        self.start_button.setDefault(True)
        self.stop_button = QPushButton("Stop after this file")
        self.cancel_button = QPushButton("Cancel now")
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
        layout.addLayout(top, 2)
        layout.addLayout(middle)
        layout.addWidget(self.job_label)
        layout.addWidget(self.job_bar)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.overall_bar, 1)
        progress_row.addWidget(self.eta_label)
        layout.addLayout(progress_row)
        layout.addWidget(self.table, 3)
        layout.addWidget(self.summary_label)
        layout.addLayout(buttons)

    # --- inputs, models, folder --------------------------------------------------------
    def add_inputs(self, paths: Sequence[Path | str]) -> None:
        present = set(self.inputs())
        for path in (Path(p) for p in paths):
            if path not in present:
                self.input_list.addItem(str(path))
                present.add(path)

    def inputs(self) -> list[Path]:
        return [Path(self.input_list.item(i).text()) for i in range(self.input_list.count())]

    def target_channel(self) -> int | str | None:
        from labelfree_app.io.channels import parse_channel

        return parse_channel(self.target_edit.text())

    def checked_models(self) -> list[str]:
        return self.model_list.checked()

    def set_models_checked(self, model_ids: Sequence[str]) -> None:
        self.model_list.set_checked(model_ids)

    def _choose_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add images", "", "Images (*.tif *.tiff *.png);;All files (*)")
        self.add_inputs(files)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of images")
        if folder:
            self.add_inputs([folder])

    def _choose_out_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder", self.out_edit.text())
        if folder:
            self.out_edit.setText(folder)

    def _remove_selected(self) -> None:
        for item in self.input_list.selectedItems():
            self.input_list.takeItem(self.input_list.row(item))

    def accepts_drops(self) -> bool:
        return not self.is_running()

    def files_dropped(self, paths: list[Path]) -> None:
        self.add_inputs(paths)

    # --- running ------------------------------------------------------------------------
    def problem(self) -> str:
        """What stops the batch from starting, as one sentence ("" when it can start)."""
        if not self.inputs():
            return "Add the files or folders to predict first (drop them on this window)."
        if not self.checked_models():
            return "Tick at least one model."
        if not self.out_edit.text().strip():
            return "Choose an output folder."
        return ""

    def start(self) -> bool:
        if self.is_running() and self._reported:
            self.wait(5000)  # the last batch has reported; its thread is only winding down
        reason = "A batch is already running." if self.is_running() else self.problem()
        if reason:
            self.summary_label.setText(reason)
            return False
        self.table.setRowCount(0)
        self.summary_label.setText("Starting…")
        self.overall_bar.setValue(0)
        self.job_bar.setValue(0)
        self.eta_label.setText(format_eta(None))
        self.last_done = None
        self._reported = False
        self.clock = BatchClock()
        self.worker = BatchWorker(self.backend, self.inputs(), self.checked_models(),
                                  Path(self.out_edit.text().strip()), self.settings_box.values(),
                                  overwrite=self.overwrite_box.isChecked(), target_channel=self.target_channel())
        self.worker.jobStarted.connect(self._on_job_started)
        self.worker.jobProgress.connect(self._on_job_progress)
        self.worker.jobFinished.connect(self._on_job_finished)
        self.worker.batchDone.connect(self._on_batch_done)
        self.worker.errored.connect(self._on_error)
        self.worker.thread.finished.connect(self._on_thread_finished)
        self._set_running(True)
        self.worker.start()
        return True

    def is_running(self) -> bool:
        return self.worker is not None and self.worker.is_running()

    def stop_after_current(self) -> None:
        if self.worker is not None:
            self.worker.stop_after_current()
            self.summary_label.setText("Stopping after the current file…")

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.summary_label.setText("Cancelling…")

    def wait(self, ms: int = 10000) -> bool:
        return self.worker.wait(ms) if self.worker is not None else True

    def open_output_folder(self) -> None:
        reveal_folder(Path(self.out_edit.text().strip()), self.summary_label.setText, self.opener)

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.cancel_button.setEnabled(running)
        for widget in (self.input_list, self.model_list, self.out_edit, self.overwrite_box, self.target_edit,
                       self.settings_box):
            widget.setEnabled(not running)
        if running:
            self.ticker.start()
        else:
            self.ticker.stop()

    def _tick(self) -> None:
        """Between progress events: the ETA counts down, the seconds on this file count up."""
        if self.is_running() and not self._reported:
            self.eta_label.setText(format_eta(self.clock.eta()))
            self.summary_label.setText(self.clock.status())

    def _on_thread_finished(self) -> None:
        if not self.is_running():  # a finished old thread must not unlock a newer running batch
            self._set_running(False)

    def _on_job_started(self, label: str, position: int, total: int) -> None:
        self.job_label.setText(f"File {position + 1} of {total}: {label}")
        self.clock.job_started(position, total)
        self.summary_label.setText(self.clock.status())
        self.job_bar.setRange(0, 0)  # busy until the first progress arrives
        self.job_bar.setFormat("")
        self.overall_bar.setRange(0, total)

    def _on_job_progress(self, done: int, total: int, stage: str) -> None:
        self.job_bar.setRange(0, max(total, 1))
        self.job_bar.setValue(done)
        self.job_bar.setFormat(f"{stage} {done}/{total}")
        self.clock.job_progress(done, total, stage)
        self.eta_label.setText(format_eta(self.clock.eta()))
        self.summary_label.setText(self.clock.status())

    def _on_job_finished(self, row: Any, finished: int, total: int, eta: float | None) -> None:
        self.overall_bar.setRange(0, total)
        self.overall_bar.setValue(finished)
        self.clock.job_finished(row.seconds, row.status in ("done", "failed"), eta)
        self.eta_label.setText(format_eta(self.clock.eta()) if finished < total else "")
        self._add_row(row)

    def _add_row(self, row: Any) -> None:
        index = self.table.rowCount()
        self.table.insertRow(index)
        r = "" if row.pearson_r is None else f"{row.pearson_r:.3f}"
        model = self.model_names.get(row.model, row.model)
        values = (Path(row.input).name, model, row.status, f"{row.seconds:.1f}", r, row.error or row.note)
        for column, text in enumerate(values):
            item = QTableWidgetItem(text)
            item.setToolTip(row.error or row.note or row.input)
            if row.status == "failed":
                item.setBackground(QBrush(FAILED_COLOUR))
            self.table.setItem(index, column, item)
        self.table.scrollToBottom()

    def _on_batch_done(self, done: Any) -> None:
        self.last_done = done
        self._reported = True
        counts = ", ".join(f"{n} {status}" for status, n in done.counts.items() if n) or "nothing to do"
        text = f"{counts}. Report: {done.report[0]}"
        if done.fatal:
            text = f"The batch stopped: {done.fatal} ({counts})"
        elif done.stopped:
            text = f"Stopped ({counts}); start again to finish: finished files are skipped. Report: {done.report[0]}"
        self.summary_label.setText(text)
        self.job_bar.setRange(0, 1)
        self.job_bar.setValue(1 if not done.stopped else 0)
        self._set_running(False)
        self.batchFinished.emit(done)

    def _on_error(self, sentence: str, is_user_error: bool) -> None:
        self._reported = True
        self.summary_label.setText(sentence if is_user_error else f"Unexpected error: {sentence}")
        self.job_bar.setRange(0, 1)
        self._set_running(False)
        self.batchFinished.emit(None)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt name)
        if self.is_running():
            self.cancel()
            self.wait(15000)
        super().closeEvent(event)


def open_batch_dialog(
    parent: QWidget,
    backend: Any,
    models: Sequence[Any],
    controls: RunControls,
    files: FileList,
    settings: GuiSettings,
    dialogs: list[QWidget],
) -> BatchDialog:
    """Open the dialog prefilled with the open files, the chosen model, the Run panel's settings (shown
    and editable there) and the last batch folder. The export folder is Export's own: a batch never changes it."""
    # A z-stack opened from plane files is one image of many files: the batch takes whole files only.
    inputs = [record.path for record in files.files if not record.extra.get("plane_paths")]
    out_dir = settings.get("batch_folder") or settings.get("export_folder") or ""
    dialog = BatchDialog(backend, models, settings=window_settings(controls), selected_model=controls.model_id(),
                         inputs=inputs, out_dir=out_dir, parent=parent)
    dialog.batchFinished.connect(lambda _: settings.set("batch_folder", dialog.out_edit.text().strip()))
    dialog.show()
    dialogs.append(dialog)
    return dialog
