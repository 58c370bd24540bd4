"""The main window: files on the left, the four panels in the middle, run controls on the right."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from PySide6.QtCore import QByteArray, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QComboBox, QDockWidget, QFileDialog, QLabel, QMainWindow, QVBoxLayout, QWidget

from labelfree_app.errors import LabelFreeError
from labelfree_app.io.reading import natural_sort_key
from labelfree_app.gui.backend import Backend, channel_count, expand_paths, image_facts
from labelfree_app.gui.batch.dialog import open_batch_dialog
from labelfree_app.gui.dialogs import about_dialog, error_box, unexpected_error_box, vertical_scroll
from labelfree_app.gui.files import plane_series
from labelfree_app.gui.files.drops import FileDrops
from labelfree_app.gui.files.file_list import DONE, FAILED, IMAGE_FILTER, LOADED, LOADING, FileList, OpenFile
from labelfree_app.gui.files.file_list import DOCK_SEPARATOR_STYLE
from labelfree_app.gui.files.open_plan import plan_opening
from labelfree_app.gui.files.shown_file import ShownFile
from labelfree_app.gui.menus import MenuCallbacks, build_menus, fill_recent_menu
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
UNREADABLE = "This file could not be read — hover it in the list to see why"


class MainWindow(FileDrops, QMainWindow):
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

    # --- files ----------------------------------------------------------------------------
    def files_dropped(self, paths: list[Path]) -> None:
        self.open_inputs(paths)

    def open_dialog(self) -> None:
        chosen, _ = QFileDialog.getOpenFileNames(self, "Open images", self.settings.get("last_folder"), IMAGE_FILTER)
        if chosen:
            self.open_inputs([Path(p) for p in chosen])

    def open_folder_dialog(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Open folder", self.settings.get("last_folder"))
        if chosen:
            self.open_inputs([Path(chosen)])

    def open_inputs(self, paths: Sequence[Path], *, ask: bool = True) -> list[OpenFile]:
        """Every door's way in (drop, File ▸ Open, Open folder, the command line), as ``open_plan``
        plans it: a plane series becomes one z-stack if the user says so (without ``ask``: always),
        the other files open one by one in natural order, fluorescence-named files are set aside
        with a word in the status bar. Shows the first entry."""
        files = expand_paths(paths)
        if not files:
            self.show_message("No TIFF or PNG images were found in what was opened.")
            return []
        plan = plan_opening(files)
        records: list[OpenFile] = []
        singles = list(plan.singles)
        for stack in plan.stacks:
            if not ask or self.ask_open_as_stack(len(stack)):
                records.append(self.open_plane_stack(stack))
            else:
                singles.extend(stack)
        if singles:
            records += self.open_paths(sorted(singles, key=natural_sort_key))
        if records:
            self.file_list.select(records[0])
        if plan.note():
            self.show_message(plan.note())
        return records

    def ask_open_as_stack(self, count: int) -> bool:
        """Asks the user (a hook tests replace)."""
        return plane_series.ask_open_as_stack(self, count)

    def open_stack_dialog(self) -> OpenFile | None:
        """File ▸ Open planes as z-stack: the chosen files become one entry."""
        chosen = plane_series.choose_planes(self, self.settings.get("last_folder"))
        return self.open_plane_stack(chosen) if chosen else None

    def open_plane_stack(self, paths: Sequence[Path]) -> OpenFile:
        """One list entry for single-plane files, read together in the background as one z-stack."""

        def read(record: OpenFile, planes: list[Path]) -> None:
            self.load_record(record, lambda: self.backend.read_plane_series(planes))

        record = plane_series.open_plane_stack(self.file_list, paths, read)
        self.settings.set("last_folder", str(record.path.parent))
        return record

    def open_paths(self, paths: Sequence[Path]) -> list[OpenFile]:
        """Add files (folders expand to their images), read them in the background, show the first."""
        files = expand_paths(paths)
        if not files:
            self.show_message("No TIFF or PNG images were found in what was opened.")
            return []
        records = []
        for path in files:
            existing = self.file_list.find(path)
            record = existing or self.file_list.add(path)
            records.append(record)
            if existing is None or record.state == FAILED:
                self.load_record(record)
            self._remember_recent(path)
        self.settings.set("last_folder", str(files[0].parent))
        self.file_list.select(records[0])
        return records

    def load_record(self, record: OpenFile, read: Callable[[], Any] | None = None) -> None:
        """Read ``record`` (its file, or with ``read``) in the background and show it when done."""
        self.file_list.set_state(record, LOADING)
        path = record.path
        read = read or (lambda: self.backend.read_image(path))

        def done(image: Any) -> None:
            record.image = image
            try:
                record.channel = self.backend.transmitted_channel(image)
            except LabelFreeError:
                record.channel = 0
            self.file_list.set_state(record, DONE if record.result is not None else LOADED)  # a watch's result
            if self.file_list.current() is record:
                self.show_file(record)

        def failed(exc: BaseException) -> None:
            reason = str(exc) if isinstance(exc, LabelFreeError) else f"{record.name} could not be read ({exc})."
            self.file_list.set_state(record, FAILED, reason)
            self.show_message(reason)
            if self.file_list.current() is record:
                self.panels.input_panel.clear(UNREADABLE)
                self.panels.clear_results()

        call_in_thread(read, done, failed)

    def _remember_recent(self, path: Path) -> None:
        self.settings.add_recent_file(path)
        self._fill_recent_menu()

    def _fill_recent_menu(self) -> None:
        fill_recent_menu(self.menus.recent_menu, list(self.settings.get("recent_files")),
                         lambda path: self.open_paths([path]))

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

