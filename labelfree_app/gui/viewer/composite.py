"""The Composite panel: several predicted stains in colour (``core.composite``), each with its own
contrast and on/off, optionally over the grey input; its view is linked to the other panels."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QGridLayout, QLabel, QSlider, QVBoxLayout, QWidget

from labelfree_app.core.composite import ChannelLook, colour_for, composite_rgb, display_range
from labelfree_app.gui.viewer.image_panel import ImagePanel, plane_of

CONTRAST_RANGE = (10, 400)  # the slider's upper level, in % of the channel's auto range


def _hex(colour: Sequence[float]) -> str:
    return "#" + "".join(f"{int(round(c * 255)):02x}" for c in colour)


class CompositePanel(QWidget):
    """``set_stains(names, volumes)`` with (Z, Y, X) volumes; ``show_plane(z, max_projection)``;
    ``rgb()`` is what the panel shows (0..1). ``changed`` fires after every redraw."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.panel = ImagePanel("Composite")
        self.panel.histogram.setVisible(False)  # each stain has its own contrast slider below
        self.names: list[str] = []
        self.volumes: list[np.ndarray] = []
        self.auto: list[tuple[float, float]] = []
        self.toggles: list[QCheckBox] = []
        self.sliders: list[QSlider] = []
        self.underlay_box = QCheckBox("Over the input")
        self.underlay_box.setToolTip("Draw the stains over the grey transmitted-light input")
        self.underlay_box.toggled.connect(self.redraw)
        self.underlay: tuple[np.ndarray, tuple[float, float]] | None = None  # (Z, Y, X) input and its levels
        self.z, self.max_projection = 0, False
        self._rows = QGridLayout()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.panel, 1)
        layout.addLayout(self._rows)
        layout.addWidget(self.underlay_box)

    def set_stains(self, names: Sequence[str], volumes: Sequence[np.ndarray]) -> None:
        """Show these stains (one (Z, Y, X) volume each), each in its colour at its auto contrast."""
        self._clear_rows()
        self.names, self.volumes = list(names), [np.asarray(v) for v in volumes]
        self.auto = [display_range(v) for v in self.volumes]
        for index, name in enumerate(self.names):
            colour = _hex(colour_for(index))
            toggle = QCheckBox(name)
            toggle.setChecked(True)
            toggle.setStyleSheet(f"QCheckBox {{ color: {colour}; font-weight: bold; }}")
            toggle.setToolTip(f"Show {name} ({colour})")
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setRange(*CONTRAST_RANGE)
            slider.setValue(100)
            slider.setToolTip(f"{name}: contrast (the brightest level, % of its automatic range)")
            toggle.toggled.connect(self.redraw)
            slider.valueChanged.connect(self.redraw)
            self._rows.addWidget(toggle, index, 0)
            self._rows.addWidget(slider, index, 1)
            self.toggles.append(toggle)
            self.sliders.append(slider)
        self.redraw()

    def _clear_rows(self) -> None:
        for widget in (*self.toggles, *self.sliders):
            self._rows.removeWidget(widget)
            widget.deleteLater()
        self.toggles, self.sliders = [], []

    def set_underlay(self, volume: np.ndarray | None, levels: Sequence[float] | None) -> None:
        """The grey input drawn under the stains when *Over the input* is ticked."""
        self.underlay = None if volume is None else (np.asarray(volume), tuple(levels or display_range(volume)))
        self.redraw()

    def show_plane(self, z: int, max_projection: bool) -> None:
        self.z, self.max_projection = z, max_projection
        self.redraw()

    def looks(self) -> list[ChannelLook]:
        """Each stain's colour, display range (its slider applied) and on/off."""
        looks = []
        for index, (low, high) in enumerate(self.auto):
            factor = self.sliders[index].value() / 100.0
            looks.append(ChannelLook(colour_for(index), (low, low + (high - low) * factor),
                                     self.toggles[index].isChecked()))
        return looks

    def rgb(self) -> np.ndarray | None:
        """The composite of the shown plane (Y, X, 3) in 0..1, or None without stains."""
        if not self.volumes:
            return None
        planes = [plane_of(v, self.z, self.max_projection) for v in self.volumes]
        underlay, levels = None, None
        if self.underlay_box.isChecked() and self.underlay is not None:
            underlay = plane_of(self.underlay[0], self.z, self.max_projection)
            levels = self.underlay[1]
            if underlay.shape != planes[0].shape:  # an overview of a huge input: no underlay
                underlay = levels = None
        return composite_rgb(planes, self.looks(), underlay=underlay, underlay_levels=levels)

    def redraw(self, *_: object) -> None:
        rgb = self.rgb()
        if rgb is None:
            self.panel.set_rgb(None)
            self.panel.clear("Tick two or more stains and press Run stains")
        else:
            self.panel.set_message("")
            self.panel.set_rgb(rgb)
        self.changed.emit()

    def clear(self) -> None:
        self._clear_rows()
        self.names, self.volumes, self.auto = [], [], []
        self.redraw()
