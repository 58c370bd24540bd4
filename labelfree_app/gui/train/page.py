"""Models ▸ Train a model: pairs in, a working model out, with a live view of learning.

Three pages: set up (``train_setup``: checked pairs and model choices), live (``train_live``: the
CLI's training loop in a worker thread, curves, validation crop, Pause/Resume and Stop), and the
result (the model card, and one click to install the model and run it on the open image).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from PySide6.QtCore import Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (QApplication, QDialog, QHBoxLayout, QLabel, QMessageBox, QPushButton, QStackedWidget,
                               QTextBrowser, QVBoxLayout, QWidget)

from labelfree_app.errors import LabelFreeError
from labelfree_app.gui.models.card import model_card_html
from labelfree_app.gui.open_folder import Opener, reveal_folder
from labelfree_app.gui.predict.run_controls import format_duration
from labelfree_app.gui.train.live import LivePage
from labelfree_app.gui.train.setup import SetupPage
from labelfree_app.gui.train.worker import DONE, PAUSED, TrainWorker
from labelfree_app.gui.worker import call_in_thread

SETUP, LIVE, RESULT = 0, 1, 2
UseModel = Callable[[str, list[Any]], str | None]  # (model id, installed models) -> file it runs on


def unique_name(name: str, taken: Sequence[str]) -> str:
    """``name``, or "name (2)", "name (3)"… where an installed model already has it: never two models
    with one name in the pickers."""
    if not name or name not in taken:
        return name
    number = 2
    while f"{name} ({number})" in taken:
        number += 1
    return f"{name} ({number})"


def build_config(choices: dict[str, Any]) -> Any:
    """The ``TrainConfig`` for the set-up page's choices (worker thread: it imports the core)."""
    from labelfree_app import paths
    from labelfree_app.errors import TrainingDataError
    from labelfree_app.training.datasets import check_pairs_exist
    from labelfree_app.training.presets import auto_val_region, config_from_choices, default_out_dir
    from labelfree_app.training.sampling import Region

    check_pairs_exist([*choices["pairs"], *choices["val_pairs"]])  # files may have gone since the check
    shapes = choices["shapes"]
    region = choices["val_region"]
    if region == "auto":
        region = auto_val_region(shapes)
    if region:
        for shape in shapes:
            Region.parse(region).resolve(shape, name=f"a {shape[0]}×{shape[1]} px image")
    label = choices["name"] or f"{choices['target_name']} {choices['model_type']}"
    out = Path(choices["out_dir"]) if choices["out_dir"] else default_out_dir(paths.user_data_dir() / "trainings", label)
    if out.exists() and any(out.iterdir()):
        raise TrainingDataError(f"The folder {out} already holds files; choose a new folder for the model.", path=out)
    smallest = (min(s[0] for s in shapes), min(s[1] for s in shapes))
    return config_from_choices(choices["pairs"], out, model_type=choices["model_type"], preset=choices["preset"],
                               minutes=choices["minutes"], val_region=region, val_pairs=choices["val_pairs"],
                               max_steps=choices["max_steps"], target_name=choices["target_name"],
                               name=choices["name"], smallest_shape=smallest,
                               init_from=choices.get("init_from")).with_changes(**choices["changes"])


class TrainDialog(QDialog):
    """The Train page. ``models`` are the installed ones (a start for fine-tuning); ``use_model(id,
    models)``, if given, selects a newly installed model in the main window and runs it, returning
    the name of the file it runs on (None if it runs on none)."""

    trainingFinished = Signal(object)  # TrainFinished
    trainingPaused = Signal(int)  # the checkpointed step
    trainingFailed = Signal(str)  # the sentence
    installed = Signal(str)  # model id

    def __init__(self, backend: Any, *, models: Sequence[Any] = (), use_model: UseModel | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Train a model")
        self.setObjectName("train_dialog")
        self.resize(1300, 860)
        self.backend = backend
        self.use_model = use_model
        self.after_training: UseModel | None = None  # a prepared run (Improve): install, then hand the model here
        self.config: Any = None
        self.worker: TrainWorker | None = None
        self.opener: Opener | None = None  # QDesktopServices.openUrl unless a test sets one
        self.confirm_close: Callable[[str], bool] = lambda question: QMessageBox.question(
            self, "Stop training?", question) == QMessageBox.StandardButton.Yes
        self.state = "setup"  # setup | preparing | running | pausing | paused | stopping | finished
        self.result: Any = None  # TrainFinished
        self.manifest: dict[str, Any] = {}
        self.setup = SetupPage()
        self.setup.set_models(list(models))
        self.live = LivePage()
        self._build_result_page()
        self.pages = QStackedWidget()
        for page in (self.setup, self.live, self.result_page):
            self.pages.addWidget(page)
        QVBoxLayout(self).addWidget(self.pages)
        self.setup.startRequested.connect(self.start)
        self.live.pauseClicked.connect(lambda: self.resume() if self.state == "paused" else self.pause())
        self.live.stopClicked.connect(self.stop)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shut_down)

    def _build_result_page(self) -> None:
        self.result_page = QWidget()
        self.summary_label = QLabel("")
        self.summary_label.setWordWrap(True)
        self.card = QTextBrowser()
        self.install_button = QPushButton("Install and run on the open image")
        self.install_button.setDefault(True)
        folder_button, again_button, close_button = (QPushButton("Open model folder"), QPushButton("Train another"),
                                                     QPushButton("Close"))
        self.install_button.clicked.connect(self.install_and_run)
        folder_button.clicked.connect(self._open_folder)
        again_button.clicked.connect(self._train_another)
        close_button.clicked.connect(self.close)
        self.install_label = QLabel("")
        self.install_label.setWordWrap(True)
        buttons = QHBoxLayout()
        for button in (self.install_button, folder_button, again_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(close_button)
        layout = QVBoxLayout(self.result_page)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.card, 1)
        layout.addWidget(self.install_label)
        layout.addLayout(buttons)

    # --- starting -------------------------------------------------------------------------
    def start(self) -> bool:
        """Build the config off the GUI thread and start; False (with a sentence) if it cannot."""
        if self.state not in ("setup", "finished"):
            return False
        if not self.setup.ready():
            self.setup.say(self.setup.pairs_box.problem or "Wait until the pairs are checked.")
            return False
        self.state = "preparing"
        self.setup.start_button.setEnabled(False)
        self.setup.say("")
        choices = self.setup.choices()  # read the widgets here, on the GUI thread
        choices["name"] = unique_name(choices["name"], [str(getattr(m, "name", "")) for m in self.setup.models])
        call_in_thread(lambda: build_config(choices), self._begin, self._start_failed)
        return True

    def _start_failed(self, exc: BaseException) -> None:
        self.state = "setup"
        self.setup.start_button.setEnabled(self.setup.ready())
        sentence = str(exc) if isinstance(exc, LabelFreeError) else f"Training could not start ({exc})."
        self.setup.say(sentence)
        self.trainingFailed.emit(sentence)

    def _begin(self, config: Any) -> None:
        self.config = config
        self.live.begin(config.max_steps, config.max_minutes, fresh=True)
        self.pages.setCurrentIndex(LIVE)
        self._launch(config)

    def _launch(self, config: Any, *, stop_now: bool = False) -> None:
        self.worker = TrainWorker(config, stop_now=stop_now)
        self.worker.loading.connect(self.live.on_loading)
        self.worker.started.connect(self.live.on_started)
        self.worker.steps.connect(self.live.add_steps)
        self.worker.validated.connect(self.live.on_validation)
        self.worker.trained.connect(self._on_trained)
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_worker_finished)
        self.state = "stopping" if stop_now else "running"
        self.worker.start()

    # --- control --------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.worker is not None and self.worker.is_running()

    def pause(self) -> None:
        """Checkpoint the current step and pause (Resume continues from it)."""
        if self.state == "running" and self.worker is not None:
            self.state = "pausing"
            self.worker.pause()
            self.live.set_state("pausing")

    def resume(self) -> None:
        """Continue a paused run from its checkpoint, with what is left of the time budget."""
        if self.state != "paused" or self.config is None:
            return
        self.live.begin(self.config.max_steps, self._budget_left(), fresh=False)
        self._launch(self.config.with_changes(resume=True, max_minutes=self._budget_left()))

    def stop(self) -> None:
        """Finish now and write the model from the best validated step (also from a pause)."""
        if self.state == "running" and self.worker is not None:
            self.state = "stopping"
            self.worker.stop()
        elif self.state == "paused" and self.config is not None:
            self._launch(self.config.with_changes(resume=True, max_minutes=self._budget_left()), stop_now=True)
        else:
            return
        self.live.set_state("stopping")

    def _budget_left(self) -> float | None:
        if self.config is None or self.config.max_minutes is None:
            return None
        return max(self.config.max_minutes - self.live.seconds / 60.0, 0.01)

    def wait(self, ms: int = 30000) -> bool:
        return self.worker.wait(ms) if self.worker is not None else True

    # --- worker events --------------------------------------------------------------------
    def _on_worker_finished(self, status: str) -> None:
        if status == PAUSED:
            self.state = "paused"
            self.live.set_state("paused")
            self.trainingPaused.emit(self.live.step)
        elif status != DONE and self.state != "setup":
            self.state = "setup"

    def _on_error(self, sentence: str, is_user_error: bool) -> None:
        text = sentence if is_user_error else f"Training failed unexpectedly ({sentence}); see the log file."
        self.state = "setup"
        self.pages.setCurrentIndex(SETUP)
        self.setup.say(text)
        self.setup.start_button.setEnabled(self.setup.ready())
        self.trainingFailed.emit(text)

    def _on_trained(self, event: Any, manifest: dict[str, Any]) -> None:
        self.state = "finished"
        self.result = event
        self.manifest = manifest
        self.live.set_state("finished")
        best = event.summary()
        reasons = {"max_steps": "all steps done", "max_minutes": "time budget used", "stopped": "stopped by you",
                   "early_stop": "no better validation for a while"}
        self.summary_label.setText(
            f"<b>Finished</b> after {event.steps} steps in {format_duration(event.seconds)} "
            f"({reasons.get(event.stop_reason, event.stop_reason)}); {best}. Saved in {event.package}.")
        self.card.setHtml(model_card_html(manifest))
        self.install_label.setText("")
        self.install_button.setEnabled(True)
        self.pages.setCurrentIndex(RESULT)
        self.trainingFinished.emit(event)
        if self.after_training is not None:  # Improve for my images…: install and re-run at once
            self.install_and_run()

    def prepare_for(self, use_model: UseModel) -> bool:
        """Get the set-up page ready for a prepared run whose model, once trained, is installed and
        handed to ``use_model`` at once; False while a run is going or paused."""
        if self.state == "finished":
            self._train_another()
        if self.state != "setup":
            return False
        self.after_training = use_model
        return True

    # --- result ---------------------------------------------------------------------------
    def install_and_run(self) -> None:
        """Install the new model in the registry, select it in the window and run it on the open image."""
        if self.result is None:
            return
        self.install_button.setEnabled(False)
        self.install_label.setText("Installing (checking and test-running the model)…")
        package = Path(self.result.package)
        call_in_thread(lambda: self.backend.install_model(package), self._on_installed, self._install_failed)

    def _install_failed(self, exc: BaseException) -> None:
        self.install_label.setText(str(exc))
        self.install_button.setEnabled(True)

    def _on_installed(self, model: Any) -> None:
        use_model, self.after_training = self.after_training or self.use_model, None

        def listed(models: Any) -> None:
            text = f"Installed as '{model.id}'."
            if use_model is not None:
                running_on = use_model(model.id, list(models))
                if running_on is not None:
                    text += f" Running it on {running_on} in the main window."
                    self._raise_main_window()
                else:
                    text += " Open an image in the main window and press Run."
            self.install_label.setText(text)
            self.installed.emit(model.id)

        call_in_thread(self.backend.list_models, listed, self._install_failed)

    def _raise_main_window(self) -> None:
        """The run the model was installed for shows in the main window: bring it in front of this one."""
        main = self.parentWidget().window() if self.parentWidget() is not None else None
        if main is not None:
            main.raise_()
            main.activateWindow()

    def _open_folder(self) -> None:
        if self.result is not None:
            reveal_folder(Path(self.result.package), self.install_label.setText, self.opener)

    def _train_another(self) -> None:
        self.state = "setup"
        self.result = None
        self.after_training = None
        self.setup.set_intro("")
        self.setup.out_edit.clear()
        self.setup.say("")
        self.setup.start_button.setEnabled(self.setup.ready())
        self.pages.setCurrentIndex(SETUP)

    # --- closing --------------------------------------------------------------------------
    def shut_down(self) -> None:
        """Closing while training stops it and keeps the best model so far."""
        if self.is_running() and self.worker is not None:
            self.worker.stop()
            self.wait(60000)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt name)
        if self.is_running() and not self.confirm_close(
                "Training is running. Stop it now and keep the best model so far?"):
            event.ignore()  # keep training
            return
        self.shut_down()
        super().closeEvent(event)


def open_train_dialog(parent: QWidget, backend: Any, dialogs: list[QWidget], models: Sequence[Any],
                      use_model: UseModel) -> TrainDialog:
    """Models ▸ Train a model…: one Train page per window (raised if already open)."""
    existing = next((d for d in dialogs if isinstance(d, TrainDialog)), None)
    if existing is not None:
        existing.show()
        existing.raise_()
        return existing
    dialog = TrainDialog(backend, models=models, use_model=use_model, parent=parent)
    dialog.show()
    dialogs.append(dialog)
    return dialog
