"""The main window: files on the left, the four panels in the middle, run controls on the right."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from PySide6.QtCore import QByteArray, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QComboBox, QDockWidget, QLabel, QMainWindow, QVBoxLayout, QWidget

from labelfree_app.errors import LabelFreeError
from labelfree_app.gui.backend import Backend, channel_count, image_facts
from labelfree_app.gui.batch.dialog import open_batch_dialog
from labelfree_app.gui.dialogs import about_dialog, error_box, unexpected_error_box, vertical_scroll
from labelfree_app.gui.files.file_list import FAILED, FileList, OpenFile
from labelfree_app.gui.files.file_list import DOCK_SEPARATOR_STYLE
from labelfree_app.gui.files.opening import UNREADABLE, FileOpening
from labelfree_app.gui.files.shown_file import ShownFile
from labelfree_app.gui.menus import MenuCallbacks, build_menus
from labelfree_app.gui.models.card import model_card_dialog
from labelfree_app.gui.models.manager import ModelManagerDialog
from labelfree_app.gui.predict.diffusion_estimate import DiffusionEstimate
from labelfree_app.gui.predict.results import ResultActions
from labelfree_app.gui.predict.run_controls import RunControls
from labelfree_app.gui.predict.runner import PredictionRunner
from labelfree_app.gui.predict.stains import StainsFeature
from labelfree_app.gui.predict.time_lapse import TimeLapse
from labelfree_app.gui.predict.trust_display import TrustDisplay
from labelfree_app.gui.self_test import open_self_test_dialog
from labelfree_app.gui.settings import GuiSettings
from labelfree_app.gui.streamed_run import huge_run_refusal
from labelfree_app.gui.train.improve import open_improve
from labelfree_app.gui.train.page import open_train_dialog
from labelfree_app.gui.viewer.large_image import InputView
from labelfree_app.gui.viewer.panel_grid import PanelGrid
from labelfree_app.gui.watch.dialog import open_watch_dialog
from labelfree_app.gui.watch.landing import WindowLanding
from labelfree_app.gui.worker import call_in_thread

PICKED_MODEL = "picked_model"  # OpenFile.extra key: the model the user chose for that image


class MainWindow(FileOpening, QMainWindow):
    """LabelFree's window. ``backend`` reaches the core; ``settings`` persist between sessions."""

    exported = Signal(list)  # paths written by an export

    def __init__(self, backend: Backend, settings: GuiSettings, *, log_file: Path | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.settings = settings
        self.log_file = log_file
        self.models: list[Any] = []
        self.dialogs: list[QWidget] = []  # keeps non-modal dialogs alive
        self.setWindowTitle("LabelFree")
        self.setAcceptDrops(True)
        self.resize(1600, 900)

        self.panels = PanelGrid()
        self.setCentralWidget(self.panels)
        self.input_view = InputView(self.panels, backend)
        self.file_list = FileList()
        self.channel_combo = QComboBox()
        self.channel_combo.setToolTip("Transmitted-light channel to predict from")
        self.controls = RunControls()
        self.estimate = DiffusionEstimate(backend, self.controls, self.file_list)  # "8 × 25, ~3 min on this CPU"
        self._build_docks()
        self.hover_label = QLabel("")
        self.hover_label.setMinimumWidth(640)  # room for every panel's value at the crosshair
        self.statusBar().addPermanentWidget(self.hover_label)
        self.runner = PredictionRunner(backend, self.panels, self.controls, self.file_list, self._is_diffusion)
        self.shown = ShownFile(self, self.hover_label, self.controls, self.runner.is_running)
        self.results = ResultActions(self, backend, self.file_list, self.panels, settings, self,
                                     self._model_target, self.dialogs)
        self.stains = StainsFeature(backend, self.controls, self.file_list, self.panels,  # several stains at once
                                    self.results.export_folder, self)
        self.trust = TrustDisplay(self.panels, self.runner, self, self._model_target, self.improve_current)
        self.time_lapse = TimeLapse(self.panels, backend, self.controls, self.runner, self.channel_combo, self,
                                    self.input_view.is_large, self.results.export_folder)  # the T slider
        self.landing = WindowLanding(self.file_list, self.open_paths, self.show_file)  # File ▸ Watch folder…
        self.menus = build_menus(self, self.panels, self._menu_callbacks())

        self.panels.hoverText.connect(self.hover_label.setText)
        self.panels.filesDropped.connect(self.open_inputs)
        self.panels.groundTruthDropped.connect(self._on_ground_truth_dropped)
        self.results.exported.connect(self.exported)
        self.file_list.currentFileChanged.connect(self.show_file)
        self.channel_combo.currentIndexChanged.connect(self._on_channel_changed)
        self.controls.runRequested.connect(self.run_current)
        self.controls.cancelRequested.connect(self.runner.cancel)
        self.controls.cardRequested.connect(self.show_model_card)
        self.controls.modelPicked.connect(self._remember_model_pick)
        self.runner.message.connect(self.show_message)
        self.runner.failed.connect(self.report_error)
        self.input_view.message.connect(self.show_message)

        self._restore_settings()
        self.show_message("Drop TIFF files or a folder anywhere on the window, or use File ▸ Open.")
        QTimer.singleShot(0, self.refresh_models)

    # --- layout ---------------------------------------------------------------------------
    def _menu_callbacks(self) -> MenuCallbacks:
        return MenuCallbacks(
            open_files=self.open_dialog,
            open_folder=self.open_folder_dialog,
            open_stack=self.open_stack_dialog,
            export=self.results.export_current,
            choose_export_folder=self.results.choose_export_folder,
            batch_export=lambda: open_batch_dialog(self, self.backend, self.models, self.controls, self.file_list,
                                                   self.settings, self.dialogs),
            watch_folder=lambda: open_watch_dialog(self, self.backend, self.models, self.controls, self.settings,
                                                   self.dialogs, self.landing.show),
            show_x0=self.runner.show_clean_estimate,
            compare=self.results.compare_current,
            manage_models=self.open_model_manager,
            model_card=lambda: self.show_model_card(self.controls.model_id() or ""),
            train=lambda: open_train_dialog(self, self.backend, self.dialogs, self.models, self.use_installed_model),
            improve=self.improve_current,
            self_test=lambda: open_self_test_dialog(self, self.dialogs),
            about=self.show_about,
            run=self.run_current,
            cancel=self.runner.cancel,
            view_actions=(self.trust.map_view.action,),
        )

    def _build_docks(self) -> None:
        files = QWidget()
        layout = QVBoxLayout(files)
        layout.addWidget(self.file_list, 1)
        layout.addWidget(QLabel("Input channel"))
        layout.addWidget(self.channel_combo)
        for title, widget, area, name in (
            ("Files", files, Qt.DockWidgetArea.LeftDockWidgetArea, "files_dock"),
            ("Run", vertical_scroll(self.controls), Qt.DockWidgetArea.RightDockWidgetArea, "run_dock"),
        ):
            dock = QDockWidget(title, self)
            dock.setObjectName(name)
            dock.setWidget(widget)
            dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
            self.addDockWidget(area, dock)
        self.resizeDocks(
            [self.findChild(QDockWidget, "files_dock"), self.findChild(QDockWidget, "run_dock")],
            [320, 290], Qt.Orientation.Horizontal)
        self.setStyleSheet(DOCK_SEPARATOR_STYLE)

    # --- messages -------------------------------------------------------------------------
    def show_message(self, text: str, timeout_ms: int = 0) -> None:
        self.statusBar().showMessage(text, timeout_ms)

    def report_error(self, text: str, is_user_error: bool = True) -> None:
        """A LabelFreeError sentence goes to the status bar and a dialog; anything else names the log."""
        self.show_message(text)
        if is_user_error or self.log_file is None:
            self.dialogs.append(error_box(self, text))
        else:
            self.dialogs.append(unexpected_error_box(self, text, self.log_file))

    def _on_ground_truth_dropped(self, paths: list[Path]) -> None:
        """A file dropped on the Prediction panel is ground truth for the shown image (opened if none)."""
        if not self.results.load_ground_truth(paths[0]):
            self.open_paths(paths[:1])

    def show_file(self, record: OpenFile | None) -> None:
        """Show ``record``'s input (its chosen channel) and its last result, if any."""
        self.shown.show(record)
        self.channel_combo.blockSignals(True)
        self.channel_combo.clear()
        if record is None or record.image is None:
            self.channel_combo.blockSignals(False)
            self.input_view.stop()
            self.controls.set_image_facts(None, self._model_pick(record))
            if record is None:
                self.panels.show_empty()
            else:
                self.panels.input_panel.clear(UNREADABLE if record.state == FAILED else "Reading…")
                self.panels.clear_results()
            return
        names = list(getattr(record.image, "channel_names", ()) or ())
        channels = channel_count(record.image)
        for index in range(channels):
            self.channel_combo.addItem(names[index] if index < len(names) else f"channel {index}", index)
        self.channel_combo.setCurrentIndex(record.channel)
        self.channel_combo.setEnabled(channels > 1)
        self.channel_combo.blockSignals(False)
        self.input_view.show(record)
        self.controls.set_image_facts(image_facts(record.image), self._model_pick(record))
        self.runner.show_result(record)

    @staticmethod
    def _model_pick(record: OpenFile | None) -> str:
        """The model the user chose for ``record``'s image ('' when the one rule chooses)."""
        return str(record.extra.get(PICKED_MODEL, "")) if record is not None else ""

    def _remember_model_pick(self, model_id: str) -> None:
        record = self.file_list.current()
        if record is not None:
            record.extra[PICKED_MODEL] = model_id

    def _on_channel_changed(self, index: int) -> None:
        record = self.file_list.current()
        if record is None or record.image is None or index < 0:
            return
        record.channel = index
        self.input_view.show_channel(record)

    # --- running --------------------------------------------------------------------------
    def _model(self, model_id: str) -> Any:
        return next((m for m in self.models if m.id == model_id), None)

    def _is_diffusion(self, model_id: str) -> bool:
        from labelfree_app.core.settings import is_diffusion

        return is_diffusion(self._model(model_id))

    def _model_target(self, model_id: str) -> str:
        model = self._model(model_id)
        return str(model.target) if model is not None else ""

    def run_current(self) -> bool:
        record = self.file_list.current()
        model_id = self.controls.model_id()
        if record is None or record.image is None:
            self.show_message("Open an image first: drop a TIFF on the window or use File ▸ Open.")
            return False
        if not model_id:
            self.show_message("No model is installed; add one in Models ▸ Manage models.")
            return False
        problem = self.controls.run_problem()
        if problem:  # Run is disabled then; this guards Ctrl+R and the --screenshot run
            self.show_message(problem)
            return False
        large = self.input_view.is_large(record.image)
        refusal = huge_run_refusal(record.name, record.image.data.shape, self._model(model_id)) if large else ""
        if refusal:  # only 2D U-Nets stream a huge image; the others predict the whole image in memory
            self.report_error(refusal)
            return False
        settings = self.controls.settings()
        settings["channel"] = record.channel
        if self.runner.start(record, model_id, settings):
            self.show_message(f"Predicting {record.name} with {model_id}…")
            return True
        self.show_message("A prediction is already running; wait for it or press Cancel.")
        return False

    # --- models ---------------------------------------------------------------------------
    def refresh_models(self, select_id: str = "") -> None:
        """List models and devices in the background (they may import torch); then the one rule
        chooses the model for the shown image, unless the user picked one (or ``select_id``) for it."""

        def got_models(models: Any) -> None:
            self.models = list(models)
            self.controls.set_models(self.models, self.settings.get("last_model_id"))
            if select_id:  # asked for by name: the user's pick for the shown image
                self.controls.choose(select_id)

        call_in_thread(self.backend.list_models, got_models, lambda exc: self.report_error(str(exc)))
        call_in_thread(
            self.backend.devices,
            lambda devices: self.controls.set_devices(devices, self.settings.get("device")),
            lambda exc: self.show_message(f"Could not list compute devices ({exc}); using auto."),
        )

    def use_installed_model(self, model_id: str, models: Sequence[Any]) -> str | None:
        """Select a newly installed model and run it on the shown file; returns that file's name, if any."""
        self.models = list(models)
        self.controls.set_models(self.models)
        self.controls.choose(model_id)
        record = self.file_list.current()
        if record is not None and record.image is not None and self.run_current():
            return record.name
        return None

    def improve_current(self) -> Any:
        """Improve for my images…: the Train page set to fine-tune the shown result's model on its file."""
        return open_improve(self, self.backend, self.dialogs, self.models, self.file_list,
                            self.use_installed_model, self.show_message)

    def show_model_card(self, model_id: str) -> None:
        if not model_id:
            self.show_message("No model selected.")
            return
        try:
            self.dialogs.append(model_card_dialog(self, self.backend.model_manifest(model_id)))
        except LabelFreeError as exc:
            self.report_error(str(exc))

    def open_model_manager(self) -> ModelManagerDialog:
        dialog = ModelManagerDialog(self.backend, self)
        dialog.modelsChanged.connect(lambda: self.refresh_models())
        dialog.open()
        self.dialogs.append(dialog)
        return dialog

    def show_about(self) -> None:
        self.dialogs.append(about_dialog(self, self.models, self.backend.model_manifest))

    # --- settings -------------------------------------------------------------------------
    def _restore_settings(self) -> None:
        geometry = self.settings.get("window_geometry")
        if geometry:
            self.restoreGeometry(QByteArray.fromBase64(geometry.encode("ascii")))
        state = self.settings.get("window_state")
        if state:
            self.restoreState(QByteArray.fromBase64(state.encode("ascii")))
        self.controls.restore(self.settings.get("diffusion") or {}, bool(self.settings.get("tta")))
        self._fill_recent_menu()

    def save_settings(self) -> None:
        self.settings.set("window_geometry", bytes(self.saveGeometry().toBase64()).decode("ascii"))
        self.settings.set("window_state", bytes(self.saveState().toBase64()).decode("ascii"))
        self.settings.set("device", self.controls.device())
        self.settings.set("diffusion", self.controls.diffusion_values())
        self.settings.set("tta", self.controls.tta_box.isChecked())
        self.settings.set("last_model_id", self.controls.model_id() or "")
        self.settings.save()

    def shut_down(self) -> None:
        """Stop a running prediction, let background reads finish, and save the settings."""
        for run in (self.runner, self.time_lapse):
            run.cancel()
            run.wait(10000)
        QThreadPool.globalInstance().waitForDone(10000)
        self.save_settings()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt name)
        self.shut_down()
        super().closeEvent(event)

