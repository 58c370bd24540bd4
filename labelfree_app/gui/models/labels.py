"""How a model is named on screen: its name once, with only what the name does not already say,
and a combo box that elides in the middle so two long names still differ where they differ."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QPaintEvent
from PySide6.QtWidgets import QComboBox, QStyle, QStyleOptionComboBox, QStylePainter

_KIND_WORDS = {"unet": ("U-Net", ("u-net", "unet")), "diffusion": ("diffusion", ("diffusion",))}


def model_label(model: Any) -> str:
    """``name`` plus the kind (and 3D) only where the name does not say it, inside its own brackets:
    "ISL MAP2 U-Net (phase z-stack)", "Nuclei from any transmitted light (2D, generalist, U-Net)"."""
    name = str(getattr(model, "name", "") or getattr(model, "id", "model"))
    lowered = name.lower()
    extras = []
    word, spellings = _KIND_WORDS.get(str(getattr(model, "kind", "")), (str(getattr(model, "kind", "")), ()))
    if word and not any(s in lowered for s in spellings or (word.lower(),)):
        extras.append(word)
    if int(getattr(model, "dims", 2) or 2) == 3 and "3d" not in lowered:
        extras.append("3D")
    if not extras:
        return name
    if name.endswith(")"):
        return f"{name[:-1]}, {', '.join(extras)})"
    return f"{name} ({', '.join(extras)})"


class MiddleElidedCombo(QComboBox):
    """A combo box whose shown text is cut in the middle, keeping the start and the distinguishing end."""

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt's name)
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        field = self.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, option,
                                            QStyle.SubControl.SC_ComboBoxEditField, self)
        option.currentText = self.fontMetrics().elidedText(option.currentText, Qt.TextElideMode.ElideMiddle,
                                                           max(field.width() - 4, 0))
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)

    def shown_text(self) -> str:
        """The text as drawn now (for tests and tooltips)."""
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        field = self.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, option,
                                            QStyle.SubControl.SC_ComboBoxEditField, self)
        return self.fontMetrics().elidedText(self.currentText(), Qt.TextElideMode.ElideMiddle,
                                             max(field.width() - 4, 0))
