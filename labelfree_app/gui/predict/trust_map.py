"""The trust map: where the input looks unlike the model's training inputs, tinted over the prediction.

A result's ``trust_map`` (``core.trust``) is the input's *familiarity* per pixel, 0..1: the share of
training patches that lie at least as far from the training inputs' centre. Above
``FAMILIAR_FROM`` a patch is as typical as most training patches and stays clear; below it the tint
grows (on a log scale) to full strength at ``UNFAMILIAR_AT`` and under: there the model extrapolates.
The tint is a layer of the Prediction panel, so it pans and zooms with the linked panels, and it
is redrawn for the shown z plane (the least familiar plane for a max projection).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QCheckBox, QWidget

from labelfree_app.gui.viewer.image_panel import plane_of
from labelfree_app.gui.viewer.panel_grid import PanelGrid, first_channel

FAMILIAR_FROM = 0.1
UNFAMILIAR_AT = 0.01
TINT_RGB = (1.0, 0.0, 0.85)  # magenta: stands out over grey and over the green overlay
TINT_MAX_ALPHA = 0.5
LEGEND = ("Trust map: magenta marks where the input looks unlike the model's training images; "
          "the prediction there is extrapolated.")
ON_TIP = ("Tint the prediction where the input looks unlike the images the model was trained on "
          "(there it extrapolates); the cursor read-out gives the familiarity, 0–1")
NONE_TIP = ("This result has no trust map: 3D models and models that do not know their training inputs have "
            "none, and a huge image predicted band by band shows none")
# The trust note's tooltip for a huge image's result, predicted band by band into a file.
STREAMED_TIP = ("The trust map is not shown over a huge image predicted band by band; "
                "labelfree predict --trust-map writes it as a file (up to 64 Mi pixels).")


def familiarity_plane(volume: np.ndarray, z: int, max_projection: bool) -> np.ndarray:
    """The (Y, X) familiarity to show: plane ``z`` (clamped), or the least familiar over z."""
    return plane_of(volume, z, max_projection, project=np.min)


def familiarity_rgba(plane: np.ndarray) -> np.ndarray:
    """(Y, X, 4) in 0..1: clear where familiar, magenta growing as familiarity falls below ``FAMILIAR_FROM``."""
    familiar = np.clip(np.nan_to_num(np.asarray(plane, dtype=np.float32), nan=0.0), 1e-6, 1.0)
    strength = np.log(FAMILIAR_FROM / familiar) / np.log(FAMILIAR_FROM / UNFAMILIAR_AT)
    rgba = np.empty(familiar.shape + (4,), dtype=np.float32)
    rgba[..., :3] = TINT_RGB
    rgba[..., 3] = np.clip(strength, 0.0, 1.0) * TINT_MAX_ALPHA
    return rgba


class TrustMapView:
    """The Trust map toggle (a check box under the panels and ``action`` for the View menu) and the
    tint it draws over ``panels.prediction_panel``; ``on_shown(bool)`` hears whether the tint is drawn
    (to show its legend)."""

    def __init__(self, panels: PanelGrid, parent: QWidget, on_shown: Callable[[bool], Any] | None = None) -> None:
        self.panels = panels
        self.on_shown = on_shown
        self.volume: np.ndarray | None = None  # (Z, Y, X) familiarity of the shown result
        self.box = QCheckBox("Trust map")
        self.action = QAction("&Trust map (where the model extrapolates)", parent)
        self.action.setCheckable(True)
        self.action.setShortcut(QKeySequence("Ctrl+T"))
        self.box.toggled.connect(self.set_shown)
        self.action.toggled.connect(self.set_shown)
        panels.add_control(self.box)
        panels.planeChanged.connect(self.redraw)
        panels.resultsCleared.connect(lambda: self.set_map(None))
        self.set_map(None)

    @property
    def shown(self) -> bool:
        return self.box.isChecked() and self.volume is not None

    def set_map(self, trust_map: Any) -> None:
        """The shown result's trust map ((C, Z, Y, X) or (Z, Y, X); None: it has none)."""
        self.volume = None if trust_map is None else np.asarray(first_channel(trust_map), dtype=np.float32)
        available = self.volume is not None
        for widget in (self.box, self.action):
            widget.setEnabled(available)
            widget.setToolTip(ON_TIP if available else NONE_TIP)
        self.redraw()

    def set_shown(self, on: bool) -> None:
        """Show or hide the tint; the check box and the menu entry follow each other."""
        for widget in (self.box, self.action):
            if widget.isChecked() != bool(on):
                widget.blockSignals(True)
                widget.setChecked(bool(on))
                widget.blockSignals(False)
        self.redraw()

    def redraw(self) -> None:
        """Draw the tint for the shown plane, or remove it."""
        panel = self.panels.prediction_panel
        plane = None
        if self.shown and panel.plane is not None:
            plane = familiarity_plane(self.volume, self.panels.z, self.panels.max_projection)
            if plane.shape != panel.plane.shape:  # a map of another image (an overview): show none
                plane = None
        if plane is None:
            panel.set_tint(None)
        else:
            panel.set_tint(familiarity_rgba(plane), plane, "familiarity")
        if self.on_shown is not None:
            self.on_shown(plane is not None)
