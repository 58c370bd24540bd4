"""The note under the Prediction panel: how far the shown prediction can be trusted, and what to do.

It shows the result's ``TrustEstimate`` (``core.trust``) at a glance: the level as a coloured word,
the expected Pearson r with a real stain and its interval, one sentence why and one what to do,
and, for an uncertain or untrustworthy result, the *Improve for my images…* button. Without an
estimate it shows one grey line ("not estimated for this model", the reason in its tooltip).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from labelfree_app.gui.trust_levels import (NOT_ESTIMATED, NOT_ESTIMATED_WHY, interval_text, level_background,
                                            level_colour)

IMPROVE_TEXT = "Improve for my images…"
IMPROVE_TIP = ("Fine-tune this model on a stained field of your own (Quick fine-tune, about 2 minutes), "
               "then run the new model on this image")
IMPROVABLE = ("uncertain", "not trustworthy")  # levels that offer the Improve button


class TrustNote(QFrame):
    """Emits ``improveRequested`` from its button. ``level`` is the shown level ('' when hidden,
    'not estimated' without an estimate)."""

    improveRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("trust_note")
        self.level = ""
        self.badge = QLabel("")
        self.badge.setObjectName("trust_badge")
        self.figure_label = QLabel("")
        self.figure_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.reason_label = QLabel("")
        self.advice_label = QLabel("")
        self.before_label = QLabel("")
        self.legend_label = QLabel("")  # what the trust map's tint means, while it is shown
        self.legend_label.setStyleSheet("color: #8a007a")
        self.legend_label.hide()
        for label in (self.figure_label, self.reason_label, self.advice_label, self.before_label,
                      self.legend_label):
            label.setWordWrap(True)
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # wrap, never widen
        self.improve_button = QPushButton(IMPROVE_TEXT)
        self.improve_button.setToolTip(IMPROVE_TIP)
        self.improve_button.clicked.connect(self.improveRequested)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.badge, 0, Qt.AlignmentFlag.AlignTop)
        top.addWidget(self.figure_label, 1)
        top.addWidget(self.improve_button, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 8, 6)
        layout.setSpacing(2)
        layout.addLayout(top)
        layout.addWidget(self.reason_label)
        layout.addWidget(self.advice_label)
        layout.addWidget(self.before_label)
        layout.addWidget(self.legend_label)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.clear()

    def clear(self) -> None:
        """Nothing to say: no result is shown."""
        self.level = ""
        self.hide()

    def show_not_estimated(self) -> None:
        """A result without an estimate: one grey line, the reason in its tooltip."""
        self.level = "not estimated"
        self._style(None)
        self.badge.hide()
        self.figure_label.setText(f"Reliability: {NOT_ESTIMATED}.")
        self.figure_label.setStyleSheet("color: #707070")
        self.setToolTip(NOT_ESTIMATED_WHY)
        for label in (self.reason_label, self.advice_label, self.before_label):
            label.hide()
        self.improve_button.hide()
        self.show()

    def show_trust(self, trust: Any, *, target: str = "", before: str = "", tip: str = "") -> None:
        """Show ``trust`` (a ``core.trust.TrustEstimate``); ``target`` names the stain, ``before`` is a
        line about the result this one replaces (after Improve for my images…), ``tip`` a sentence
        added to the tooltip."""
        self.level = str(trust.level)
        colour = level_colour(self.level)
        self._style(self.level)
        self.badge.setText(self.level.upper())
        self.badge.setStyleSheet(f"background: {colour}; color: white; font-weight: bold; padding: 2px 8px;"
                                 "border-radius: 3px")
        self.badge.show()
        stain = f"a real {target} stain" if target else "a real stain"
        self.figure_label.setText(f"<b>{interval_text(trust).capitalize()}</b> with {stain}.")
        self.figure_label.setStyleSheet("color: #202020")
        self.setToolTip("Pearson r that this prediction is expected to reach against a real stain of the same "
                        "field, with the range that covers most such images (estimated from the prediction and "
                        "how familiar the input looks to the model)." + (f" {tip}" if tip else ""))
        self.reason_label.setText(str(trust.reason))
        self.advice_label.setText(f"<b>What to do:</b> {trust.advice}")
        self.before_label.setText(before)
        for label in (self.reason_label, self.advice_label):
            label.setStyleSheet("color: #202020")
            label.show()
        self.before_label.setStyleSheet("color: #505050")
        self.before_label.setVisible(bool(before))
        self.improve_button.setVisible(self.level in IMPROVABLE)
        self.show()

    def set_legend(self, text: str) -> None:
        """A line saying what the trust map shows while it is drawn ('' hides it)."""
        self.legend_label.setText(text)
        self.legend_label.setVisible(bool(text))

    def _style(self, level: str | None) -> None:
        if level is None:
            self.setStyleSheet("")
            return
        self.setStyleSheet(f"QFrame#trust_note {{ background: {level_background(level)}; "
                           f"border: 1px solid {level_colour(level)}; border-left: 6px solid {level_colour(level)}; "
                           "border-radius: 3px }")

    def text(self) -> str:
        """Everything the note says, as plain text (for tests and the status bar)."""
        parts = [self.badge.text() if self.badge.isVisibleTo(self) else "", self.figure_label.text(),
                 self.reason_label.text() if self.reason_label.isVisibleTo(self) else "",
                 self.advice_label.text() if self.advice_label.isVisibleTo(self) else "",
                 self.before_label.text() if self.before_label.isVisibleTo(self) else "",
                 self.legend_label.text() if self.legend_label.isVisibleTo(self) else ""]
        return " ".join(p for p in parts if p).replace("<b>", "").replace("</b>", "")
