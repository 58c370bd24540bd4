"""A model card: what a model predicts, from what, how it was trained and how well it does (HTML, dialog)."""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtWidgets import QWidget

from labelfree_app.gui.dialogs import TextDialog

_CARD_FIELDS = (
    ("Target", "target"),
    ("Input modality", "input_modality"),
    ("Kind", "kind"),
    ("Dimensions", "dims"),
    ("Version", "version"),
    ("License", "license"),
    ("Attribution", "attribution"),
)


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return html.escape(str(value))


def _table(mapping: dict[str, Any]) -> str:
    rows = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={_text(v)}" for k, v in value.items()) or "–"
        else:
            value = _text(value)
        rows.append(f"<tr><td><b>{html.escape(str(key))}</b></td><td>{value}</td></tr>")
    return "<table cellspacing='4'>" + "".join(rows) + "</table>"


def model_card_html(manifest: dict[str, Any]) -> str:
    """Render the parts of a manifest a person needs to decide whether to trust the model."""
    name = html.escape(str(manifest.get("name", manifest.get("id", "model"))))
    parts = [f"<h2>{name}</h2>"]
    if manifest.get("demo"):
        parts.append(
            "<p style='color:#b35900'><b>Demo model:</b> trained on synthetic data, "
            "for trying the app only — not for real images.</p>"
        )
    if manifest.get("description"):
        parts.append(f"<p>{html.escape(str(manifest['description']))}</p>")
    basics = {label: manifest[key] for label, key in _CARD_FIELDS if manifest.get(key) not in (None, "")}
    basics["Id"] = manifest.get("id", "")
    inputs = manifest.get("input") or {}
    if inputs:
        basics["Input channels"] = inputs.get("channel_names") or inputs.get("channels", "")
    basics["Test-time augmentation"] = "yes" if manifest.get("tta") else "no"
    parts.append(_table(basics))
    diffusion = manifest.get("diffusion")
    if isinstance(diffusion, dict) and diffusion:
        parts.append("<h3>Diffusion sampling defaults</h3>" + _table(diffusion))
    training = manifest.get("training")
    if isinstance(training, dict) and training:
        parts.append("<h3>Training</h3>" + _table(training))
    metrics = manifest.get("metrics")
    if isinstance(metrics, dict) and metrics:
        parts.append("<h3>Metrics</h3>" + _table(metrics))
    return "\n".join(parts)


def model_card_dialog(parent: QWidget | None, manifest: dict[str, Any]) -> TextDialog:
    """Show ``manifest``'s model card in a non-modal dialog."""
    title = f"Model card — {manifest.get('name', manifest.get('id', ''))}"
    dialog = TextDialog(title, model_card_html(manifest), parent)
    dialog.open()
    return dialog
