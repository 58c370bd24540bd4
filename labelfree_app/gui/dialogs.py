"""Small dialogs: error sentences, unexpected errors with the log path, rich text (About)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Callable, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFrame, QHBoxLayout, QLineEdit, QListWidget, QListWidgetItem,
                               QMessageBox, QPushButton, QScrollArea, QTextBrowser, QVBoxLayout, QWidget)

from labelfree_app import __version__
from labelfree_app.errors import LabelFreeError
from labelfree_app.gui.models.labels import model_label

THIRD_PARTY_LICENSES = (
    ("PySide6 (Qt for Python)", "LGPL-3.0"),
    ("pyqtgraph", "MIT"),
    ("PyTorch", "BSD-3-Clause"),
    ("NumPy", "BSD-3-Clause"),
    ("tifffile, imagecodecs", "BSD-3-Clause"),
    ("scikit-image", "BSD-3-Clause"),
    ("safetensors", "Apache-2.0"),
    ("platformdirs", "MIT"),
)


def folder_row(placeholder: str, choose: Callable[[], None]) -> tuple[QLineEdit, QHBoxLayout]:
    """A folder field with a Browse… button that calls ``choose``; returns the field and its row."""
    edit = QLineEdit()
    edit.setPlaceholderText(placeholder)
    browse = QPushButton("Browse…")
    browse.clicked.connect(choose)
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    row.addWidget(browse)
    return edit, row


class ModelChecklist(QListWidget):
    """The installed models, each with a tick box ("name — predicts target"; the id in its tooltip);
    the ``checked`` ones run."""

    def __init__(self, models: Sequence[Any], checked: Sequence[str] = (), parent: QWidget | None = None) -> None:
        super().__init__(parent)
        for model in models:
            item = QListWidgetItem(f"{model_label(model)} — predicts {getattr(model, 'target', '')}")
            item.setToolTip(f"{model.id}: {getattr(model, 'name', model.id)}")
            item.setData(Qt.ItemDataRole.UserRole, model.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            self.addItem(item)
        self.set_checked(checked)

    def checked(self) -> list[str]:
        items = (self.item(i) for i in range(self.count()))
        return [item.data(Qt.ItemDataRole.UserRole) for item in items if item.checkState() == Qt.CheckState.Checked]

    def set_checked(self, model_ids: Sequence[str]) -> None:
        for i in range(self.count()):
            item = self.item(i)
            checked = item.data(Qt.ItemDataRole.UserRole) in model_ids
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)


def error_box(parent: QWidget | None, sentence: str, title: str = "LabelFree") -> QMessageBox:
    """Show one plain sentence in a window-modal box that does not block the event loop."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, sentence, QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("labelfree-error")
    box.open()
    return box


def unexpected_error_box(parent: QWidget | None, summary: str, log_file: Path) -> QMessageBox:
    """An unexpected failure: say so plainly and where the details were written."""
    sentence = (
        f"Something unexpected went wrong ({summary}); the details were written to {log_file} — "
        "please include that file when you report it."
    )
    return error_box(parent, sentence, title="LabelFree — unexpected error")


class TextDialog(QDialog):
    """A read-only rich-text dialog (model cards, About)."""

    def __init__(self, title: str, body_html: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(True)
        self.browser.setHtml(body_html)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addWidget(buttons)
        self.resize(560, 520)


def about_html(models: Sequence[Any], manifests: dict[str, dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(license_)}</td></tr>"
        for name, license_ in THIRD_PARTY_LICENSES
    )
    model_rows = []
    for model in models:
        manifest = manifests.get(model.id, {})
        attribution = manifest.get("attribution") or "–"
        license_ = manifest.get("license") or "–"
        model_rows.append(
            f"<tr><td>{html.escape(str(model.name))} {html.escape(str(model.version))}</td>"
            f"<td>{html.escape(str(license_))}</td><td>{html.escape(str(attribution))}</td></tr>"
        )
    models_html = (
        "<table cellspacing='4'><tr><th>Model</th><th>License</th><th>Attribution</th></tr>"
        + "".join(model_rows)
        + "</table>"
        if model_rows
        else "<p>No models installed.</p>"
    )
    return (
        f"<h2>LabelFree {html.escape(__version__)}</h2>"
        "<p>Predicts fluorescence images from transmitted-light images with a U-Net regressor "
        "or a conditional diffusion model whose samples give a mean and a per-pixel variance.</p>"
        "<p>LabelFree is released under the BSD-3-Clause license.</p>"
        f"<h3>Models</h3>{models_html}"
        f"<h3>Third-party software</h3><table cellspacing='4'>{rows}</table>"
    )


def about_dialog(
    parent: QWidget | None, models: Sequence[Any], manifest_of: Callable[[str], dict[str, Any]]
) -> TextDialog:
    """About LabelFree: the version, the installed models (those whose manifest reads) and licenses."""
    manifests = {}
    for model in models:
        try:
            manifests[model.id] = manifest_of(model.id)
        except LabelFreeError:
            continue
    dialog = TextDialog("About LabelFree", about_html(models, manifests), parent)
    dialog.open()
    return dialog


def vertical_scroll(widget: QWidget) -> QScrollArea:
    """``widget`` in a scroll area that scrolls up and down only, so a tall panel (the Run controls)
    never holds the window taller than a 768-pixel screen."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(widget)
    area.setMinimumWidth(widget.minimumSizeHint().width() + area.verticalScrollBar().sizeHint().width())
    return area
