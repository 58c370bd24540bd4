"""A model card: what a model predicts, from what, how it was trained and how well it does (HTML, dialog)."""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtWidgets import QWidget

from labelfree_app.gui.dialogs import TextDialog
from labelfree_app.models.card_text import CardSection, card_sections


def _section_html(section: CardSection) -> str:
    parts = [f"<h3>{html.escape(section.title)}</h3>"]
    if section.rows:
        rows = "".join(f"<tr><td valign='top'><b>{html.escape(label)}</b></td><td>{html.escape(value)}</td></tr>"
                       for label, value in section.rows)
        parts.append(f"<table cellspacing='4'>{rows}</table>")
    if len(section.lines) == 1:
        parts.append(f"<p>{html.escape(section.lines[0])}</p>")
    elif section.lines:
        parts.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in section.lines) + "</ul>")
    return "".join(parts)


def model_card_html(manifest: dict[str, Any]) -> str:
    """The card (models/card_text) as HTML: sentences and short tables, never raw manifest values."""
    name = html.escape(str(manifest.get("name", manifest.get("id", "model"))))
    parts = [f"<h2>{name}</h2>"]
    if manifest.get("demo"):
        parts.append(
            "<p style='color:#b35900'><b>Demo model:</b> trained on synthetic data, "
            "for trying the app only — not for real images.</p>"
        )
    parts.extend(_section_html(section) for section in card_sections(manifest))
    return "\n".join(parts)


def model_card_dialog(parent: QWidget | None, manifest: dict[str, Any]) -> TextDialog:
    """Show ``manifest``'s model card in a non-modal dialog."""
    title = f"Model card — {manifest.get('name', manifest.get('id', ''))}"
    dialog = TextDialog(title, model_card_html(manifest), parent)
    dialog.resize(680, 720)
    dialog.open()
    return dialog
