"""Model manager dialog over the registry: list with model cards, install, remove, set default."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from labelfree_app.errors import LabelFreeError
from labelfree_app.gui.backend import Backend
from labelfree_app.gui.dialogs import error_box
from labelfree_app.gui.models.card import model_card_html
from labelfree_app.gui.worker import call_in_thread



class ModelManagerDialog(QDialog):
    """Lists installed models; ``modelsChanged`` fires after install / remove / set default."""

    modelsChanged = Signal()

    def __init__(
        self,
        backend: Backend,
        parent: QWidget | None = None,
        *,
        ask_path: Callable[[str], Path | None] | None = None,
        ask_text: Callable[[str, str], str | None] | None = None,
        confirm: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.backend = backend
        self._ask_path = ask_path or self._ask_path_with_dialog
        self._ask_text = ask_text or self._ask_text_with_dialog
        self._confirm = confirm or self._confirm_with_dialog
        self.models: list[Any] = []

        self.model_list = QListWidget()
        self.card = QTextBrowser()
        self.install_folder_button = QPushButton("Install folder…")
        self.install_file_button = QPushButton("Install zip…")
        self.import_fnet_button = QPushButton("Import fnet model…")
        self.import_fnet_button.setToolTip("Convert a pytorch_fnet model.p (weights only, never unpickled code)")
        self.import_bioimageio_button = QPushButton("Import bioimage.io model…")
        self.import_bioimageio_button.setToolTip("ONNX or fnet U-Net weights only; code in the model is never run")
        self.export_bioimageio_button = QPushButton("Export to bioimage.io…")
        self.export_bioimageio_button.setToolTip("Write the selected U-Net as a bioimage.io model zip")
        self.remove_button = QPushButton("Remove")
        self.default_button = QPushButton("Set as default for its target")
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.model_list)
        splitter.addWidget(self.card)
        splitter.setSizes([260, 440])
        buttons = QHBoxLayout()
        for button in (
            self.install_folder_button,
            self.install_file_button,
            self.import_fnet_button,
            self.import_bioimageio_button,
            self.export_bioimageio_button,
            self.remove_button,
            self.default_button,
        ):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.status_label)
        self.resize(760, 520)

        self.model_list.currentRowChanged.connect(self._show_card)
        self.install_folder_button.clicked.connect(lambda: self.install(self._ask_path("folder")))
        self.install_file_button.clicked.connect(lambda: self.install(self._ask_path("zip")))
        self.import_fnet_button.clicked.connect(lambda: self.import_fnet(self._ask_path("fnet")))
        self.import_bioimageio_button.clicked.connect(lambda: self.import_bioimageio(self._ask_path("bioimageio")))
        self.export_bioimageio_button.clicked.connect(lambda: self.export_bioimageio(self._ask_path("bioimageio-out")))
        self.remove_button.clicked.connect(self.remove_current)
        self.default_button.clicked.connect(self.set_current_default)
        self.reload()

    # --- list -----------------------------------------------------------------------------
    def reload(self, select_id: str = "") -> None:
        keep = select_id or (self.current().id if self.current() is not None else "")
        try:
            self.models = list(self.backend.list_models())
        except LabelFreeError as exc:
            self.models = []
            self.status_label.setText(str(exc))
        self.model_list.clear()
        for model in self.models:
            label = f"{model.name}  [{model.target}, {model.kind}]"
            if getattr(model, "default", False):
                label += "  ★ default"
            if getattr(model, "source", "") == "bundled":
                label += "  (bundled)"
            item = QListWidgetItem(label)
            item.setData(Qt.ItemDataRole.UserRole, model.id)
            self.model_list.addItem(item)
        rows = [i for i, m in enumerate(self.models) if m.id == keep]
        self.model_list.setCurrentRow(rows[0] if rows else (0 if self.models else -1))
        self._update_buttons()

    def current(self) -> Any:
        row = self.model_list.currentRow() if hasattr(self, "model_list") else -1
        return self.models[row] if 0 <= row < len(self.models) else None

    def _show_card(self, row: int) -> None:
        self._update_buttons()
        model = self.current()
        if model is None:
            self.card.setHtml("<p>No model selected.</p>")
            return
        try:
            self.card.setHtml(model_card_html(self.backend.model_manifest(model.id)))
        except LabelFreeError as exc:
            self.card.setHtml(f"<p style='color:#b00'>{exc}</p>")

    def _update_buttons(self) -> None:
        model = self.current()
        self.remove_button.setEnabled(model is not None and getattr(model, "source", "user") != "bundled")
        self.default_button.setEnabled(model is not None and not getattr(model, "default", False))
        self.export_bioimageio_button.setEnabled(model is not None and getattr(model, "kind", "") == "unet")

    # --- actions --------------------------------------------------------------------------
    def install(self, path: Path | None) -> None:
        """Install a model folder or zip in the background; the list refreshes when done."""
        if path is not None:
            self._install_in_background(path, lambda: self.backend.install_model(path))

    def import_fnet(self, path: Path | None) -> None:
        """Convert and install a pytorch_fnet model after asking what structure it predicts."""
        if path is None:
            return
        target = self._ask_text("Import fnet model", "Which structure does this model predict (e.g. DNA, membrane)?")
        if not target:
            return
        name = f"fnet {target}"
        self._install_in_background(path, lambda: self.backend.install_fnet_model(path, name=name, target=target))

    def import_bioimageio(self, path: Path | None) -> None:
        """Convert and install a bioimage.io model zip in the background."""
        if path is None:
            return
        from labelfree_app.models.bioimageio_import import install_bioimageio

        self._install_in_background(path, lambda: install_bioimageio(path, self.backend.registry))

    def export_bioimageio(self, path: Path | None) -> None:
        """Write the selected U-Net as a bioimage.io model zip in the background."""
        model = self.current()
        if path is None or model is None:
            return
        from labelfree_app.models.bioimageio_export import export_bioimageio

        out = path if path.suffix.lower() == ".zip" else path.with_suffix(".zip")
        self.status_label.setText(f"Exporting {model.name} to {out.name}…")
        self.setEnabled(False)

        def done(written: Any) -> None:
            self.setEnabled(True)
            self.status_label.setText(f"Exported {model.name} to {written}.")

        def failed(exc: BaseException) -> None:
            self.setEnabled(True)
            sentence = str(exc) if isinstance(exc, LabelFreeError) else f"Exporting {model.name} failed: {exc}."
            self.status_label.setText(sentence)
            error_box(self, sentence)

        call_in_thread(lambda: export_bioimageio(self.backend.registry.get(model.id), out, overwrite=True),
                       done, failed)

    def _install_in_background(self, path: Path, install: Callable[[], Any]) -> None:
        self.status_label.setText(f"Installing {path.name}…")
        self.setEnabled(False)

        def done(entry: Any) -> None:
            self.setEnabled(True)
            self.status_label.setText(f"Installed {getattr(entry, 'name', path.name)}.")
            self.reload(select_id=getattr(entry, "id", ""))
            self.modelsChanged.emit()

        def failed(exc: BaseException) -> None:
            self.setEnabled(True)
            self.status_label.setText(str(exc))
            sentence = str(exc) if isinstance(exc, LabelFreeError) else f"Installing {path.name} failed: {exc}."
            error_box(self, sentence)

        call_in_thread(install, done, failed)

    def remove_current(self) -> None:
        model = self.current()
        if model is None or not self._confirm(f"Remove the model '{model.name}'? Its files will be deleted."):
            return
        self._apply(lambda: self.backend.remove_model(model.id), f"Removed {model.name}.")

    def set_current_default(self) -> None:
        model = self.current()
        if model is None:
            return
        self._apply(
            lambda: self.backend.set_default_model(str(model.target), model.id),
            f"{model.name} is now the default for {model.target}.",
            select_id=model.id,
        )

    def _apply(self, action: Callable[[], Any], success: str, select_id: str = "") -> None:
        try:
            action()
        except LabelFreeError as exc:
            self.status_label.setText(str(exc))
            error_box(self, str(exc))
            return
        self.status_label.setText(success)
        self.reload(select_id=select_id)
        self.modelsChanged.emit()

    # --- default prompts ------------------------------------------------------------------
    def _ask_path_with_dialog(self, what: str) -> Path | None:
        if what == "folder":
            chosen = QFileDialog.getExistingDirectory(self, "Install model folder")
        elif what == "bioimageio":
            chosen, _ = QFileDialog.getOpenFileName(self, "Import bioimage.io model", "",
                                                    "bioimage.io models (*.zip *.yaml);;All files (*)")
        elif what == "bioimageio-out":
            chosen, _ = QFileDialog.getSaveFileName(self, "Export to bioimage.io", "model.zip", "Zip (*.zip)")
        elif what == "fnet":
            chosen, _ = QFileDialog.getOpenFileName(self, "Import fnet model", "", "fnet model (model.p *.p);;All files (*)")
        else:
            chosen, _ = QFileDialog.getOpenFileName(self, "Install model", "", "Model packages (*.zip);;All files (*)")
        return Path(chosen) if chosen else None

    def _ask_text_with_dialog(self, title: str, question: str) -> str | None:
        text, ok = QInputDialog.getText(self, title, question)
        return text.strip() if ok and text.strip() else None

    def _confirm_with_dialog(self, question: str) -> bool:
        answer = QMessageBox.question(self, "Models", question)
        return answer == QMessageBox.StandardButton.Yes
