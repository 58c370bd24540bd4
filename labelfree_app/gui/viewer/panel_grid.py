"""The four linked panels: Input | Denoising | Prediction | Variance, with the shared z controls.

Pan and zoom are linked (``setXLink``/``setYLink``); a crosshair follows the mouse in every panel
and ``hoverText`` reports the pixel value of each; the z-slider and max-projection toggle choose
the plane for all panels at once; the denoising panel animates live previews and then replays the
recorded frames; the overlay shows the prediction in colour over the bright-field.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from labelfree_app.gui.viewer.image_panel import ImagePanel
from labelfree_app.gui.viewer.playback import FramePlayer
from labelfree_app.gui.viewer.values import format_value, format_variance

VARIANCE_COLORMAP = "viridis"
WRAP_CONTROLS_BELOW_PX = 960
OVERLAY_COLOUR = np.array([0.1, 1.0, 0.35], dtype=np.float32)  # green over grey

UNET_DENOISING_NOTE = "U-Net model: one pass, no denoising steps"
NO_UNCERTAINTY_NOTE = "no uncertainty for this model"
PANEL_CHROME_PX = 100  # title + histogram under each image


def first_channel(volume: np.ndarray) -> np.ndarray:
    """(C, Z, Y, X) -> (Z, Y, X) of channel 0; (Z, Y, X) and (Y, X) pass through."""
    array = np.asarray(volume)
    return array[0] if array.ndim == 4 else array


def overlay_rgb(
    base: np.ndarray, base_levels: Sequence[float], top: np.ndarray, top_levels: Sequence[float]
) -> np.ndarray:
    """Grey ``base`` with ``top`` added in colour, both scaled by their display levels, in 0..1."""

    def scaled(plane: np.ndarray, levels: Sequence[float]) -> np.ndarray:
        low, high = float(levels[0]), float(levels[1])
        return np.clip((plane.astype(np.float32) - low) / max(high - low, 1e-12), 0.0, 1.0)

    grey = scaled(base, base_levels)[..., np.newaxis] * 0.8
    colour = scaled(top, top_levels)[..., np.newaxis] * OVERLAY_COLOUR
    return np.clip(grey + colour, 0.0, 1.0)


class PanelGrid(QWidget):
    """The four panels and the controls under them."""

    hoverText = Signal(str)
    filesDropped = Signal(list)  # files dropped on Input / Denoising / Variance: open them
    groundTruthDropped = Signal(list)  # a file dropped on Prediction: compare against it
    planeChanged = Signal()  # the z plane or the max projection changed: layers drawn per plane follow
    resultsCleared = Signal()  # the result panels were emptied (a new file, no result)
    overlayChanged = Signal(bool)  # the one overlay state, after every change or refusal (menus follow it)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.input_panel = ImagePanel("Input")
        self.denoising_panel = ImagePanel("Denoising")
        self.prediction_panel = ImagePanel("Prediction")
        self.prediction_title = "Prediction"  # with its units once a result is shown
        self.prediction_note: tuple[str, str | None] = ("", None)  # appended to its title, and its colour
        self.under_results: QWidget | None = None  # a widget kept under the Prediction and Variance panels
        self.variance_panel = ImagePanel("Variance", colormap=VARIANCE_COLORMAP)
        self.panels = (self.input_panel, self.denoising_panel, self.prediction_panel, self.variance_panel)
        for panel in self.panels[1:]:
            panel.link_to(self.input_panel)
        for panel in (self.input_panel, self.denoising_panel, self.variance_panel):
            panel.filesDropped.connect(self.filesDropped)
        self.prediction_panel.filesDropped.connect(self.groundTruthDropped)
        self.prediction_panel.graphics.setToolTip("Drop a fluorescence image here to compare with it")

        self.frames: np.ndarray | None = None  # (F, Z, Y, X) denoising frames for replay
        self.z = 0
        self.max_projection = False
        self.overlay_active = False

        self.z_slider = QSlider(Qt.Orientation.Horizontal)
        self.z_slider.setToolTip("Z plane shown in every panel")
        self.z_label = QLabel("z –")
        self.z_label.setMinimumWidth(60)
        self.max_projection_box = QCheckBox("Max projection")
        self.max_projection_box.setToolTip("Show the maximum over z in every panel")
        self.overlay_box = QCheckBox("Overlay")
        self.overlay_box.setToolTip("Show the prediction in colour over the bright-field")
        self.player = FramePlayer()
        self.player.frameChanged.connect(self._show_frame)
        self.z_slider.valueChanged.connect(self.set_z)
        self.max_projection_box.toggled.connect(self.set_max_projection)
        self.overlay_box.toggled.connect(self.set_overlay)

        self._grid = QGridLayout()
        self._grid.setSpacing(4)
        self._current_columns = 0
        self.arrange(None)
        controls = self._controls = QHBoxLayout()
        controls.addWidget(QLabel("Z"))
        controls.addWidget(self.z_slider, 2)
        controls.addWidget(self.z_label)
        controls.addWidget(self.max_projection_box)
        controls.addWidget(self.overlay_box)
        self.denoising_row = QWidget()  # moves under the other controls where the row is too narrow
        # Its width never holds the window wide: below WRAP_CONTROLS_BELOW_PX it gets a row of its own.
        self.denoising_row.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        denoising = QHBoxLayout(self.denoising_row)
        denoising.setContentsMargins(16, 0, 0, 0)
        denoising.addWidget(QLabel("Denoising"))
        denoising.addWidget(self.player, 1)
        controls.addWidget(self.denoising_row, 3)
        self._wrap_row = QHBoxLayout()
        under = QVBoxLayout()  # one layout item, so rows added above the controls stay above both
        under.addLayout(controls)
        under.addLayout(self._wrap_row)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._grid, 1)
        layout.addLayout(under)

        for panel in (self.input_panel, self.prediction_panel):
            panel.histogram.sigLevelsChanged.connect(self._on_levels_changed)
        for panel in self.panels:
            panel.graphics.scene().sigMouseMoved.connect(
                lambda pos, source=panel: self._on_mouse_moved(source, pos)
            )
        self.set_depth(1)
        self.show_empty()

    def auto_contrast_all(self) -> None:
        for panel in self.panels:
            panel.auto_contrast()

    def arrange(self, columns: int | None) -> None:
        """Lay the panels out in a row (4), a 2x2 grid (2), or whichever shows pixels larger (None)."""
        self.layout_columns = columns
        self._apply_layout()

    def _apply_layout(self) -> None:
        columns = self.layout_columns or self._best_columns()
        if columns == self._current_columns:
            return
        self._current_columns = columns
        for index, panel in enumerate(self.panels):
            self._grid.removeWidget(panel)
            self._grid.addWidget(panel, index // columns, index % columns)
        self._place_under_results()

    def attach_under_results(self, widget: QWidget) -> None:
        """Keep ``widget`` under the Prediction and Variance panels, in every layout (e.g. a note about
        the shown result); the panels keep equal sizes, so the linked views still line up."""
        self.under_results = widget
        self._place_under_results()

    def _place_under_results(self) -> None:
        columns = self._current_columns
        for row in range(3):
            self._grid.setRowStretch(row, 1 if row < len(self.panels) // max(columns, 1) else 0)
        if self.under_results is None or not columns:
            return
        self._grid.removeWidget(self.under_results)
        row, col = (1, 2) if columns == 4 else (2, 0)  # Prediction and Variance are the last two panels
        self._grid.addWidget(self.under_results, row, col, 1, 2)

    def add_side_panel(self, widget: QWidget, panel: ImagePanel) -> None:
        """Keep ``widget`` (holding ``panel``, e.g. the Composite) right of the four panels in every
        layout, its view linked to theirs."""
        panel.link_to(self.input_panel)
        self._grid.addWidget(widget, 0, 4, -1, 1)

    def add_control(self, widget: QWidget) -> None:
        """Add a toggle to the controls under the panels, after Overlay."""
        row = self._controls
        row.insertWidget(row.indexOf(self.overlay_box) + 1, widget)

    def add_row(self, widget: QWidget) -> None:
        """Add a row between the panels and the controls under them (e.g. the T slider)."""
        layout = self.layout()
        layout.insertWidget(layout.count() - 1, widget)

    def _wrap_controls(self, wrap: bool) -> None:
        """Below ``WRAP_CONTROLS_BELOW_PX`` the denoising player gets its own row (at 1366×768 its
        slider otherwise shrinks to its handle)."""
        target, source = (self._wrap_row, self._controls) if wrap else (self._controls, self._wrap_row)
        if target.indexOf(self.denoising_row) < 0:
            source.removeWidget(self.denoising_row)
            target.addWidget(self.denoising_row, 3)

    def _best_columns(self) -> int:
        plane = self.input_panel.plane
        height_px, width_px = plane.shape if plane is not None else (1, 1)
        area_w, area_h = max(self.width(), 1), max(self.height() - 40, 1)

        def scale(columns: int) -> float:
            rows = len(self.panels) // columns
            cell_w = area_w / columns
            cell_h = area_h / rows - PANEL_CHROME_PX
            return min(cell_w / width_px, cell_h / height_px)

        return 4 if scale(4) >= scale(2) else 2

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._wrap_controls(self.width() < WRAP_CONTROLS_BELOW_PX)
        if self.layout_columns is None:
            self._apply_layout()

    # --- content --------------------------------------------------------------------------
    def show_empty(self) -> None:
        self.input_panel.clear("Drop TIFF files or a folder here")
        self.clear_results()

    def set_input(self, volume: np.ndarray, *, scale: int = 1, full_size: tuple[int, int] | None = None,
                  keep_results: bool = False) -> None:
        """Show a new input (Z, Y, X) and forget earlier results (unless ``keep_results``: an overview
        arriving after its record's result was shown); an overview of a huge image passes its
        ``scale`` and full-resolution (Y, X) ``full_size`` (see ``ImagePanel.set_volume``)."""
        volume = first_channel(volume)
        self.set_depth(volume.shape[0] if volume.ndim == 3 else 1)
        self.input_panel.set_volume(volume, self.z, self.max_projection, scale=scale, full_size=full_size)
        if not keep_results:
            self.clear_results()
        if self.layout_columns is None:
            self._apply_layout()

    def clear_results(self) -> None:
        self.set_overlay(False)
        self.frames = None
        self.player.set_frame_count(0)
        self.denoising_panel.set_title("Denoising")
        self.denoising_panel.clear("")
        self.prediction_title = "Prediction"
        self.set_prediction_note("")
        self.prediction_panel.clear("Press Run to predict")
        self.variance_panel.set_title("Variance")
        self.variance_panel.clear("")
        self.resultsCleared.emit()

    def show_live_preview(self, image: np.ndarray, label: str) -> None:
        """Show one throttled denoising preview (C, Z, Y, X) as it arrives."""
        volume = first_channel(image)
        self.denoising_panel.volume = np.asarray(volume, dtype=np.float32)
        self.denoising_panel.show_plane(self.z, self.max_projection, auto_contrast=True)
        self.denoising_panel.set_title(f"Denoising — {label}")

    def set_result(
        self,
        prediction: np.ndarray,
        variance: np.ndarray | None,
        frames: np.ndarray | None,
        *,
        is_diffusion: bool,
        variance_title: str = "Variance",
        frame_labels: list[str] | None = None,
        prediction_title: str = "Prediction",
    ) -> None:
        """Fill Prediction, Variance and Denoising from a finished run (arrays in CZYX)."""
        was_overlay = self.overlay_active
        self.set_overlay(False)
        self.prediction_title = prediction_title
        self._show_prediction_title()
        self.prediction_panel.set_volume(first_channel(prediction), self.z, self.max_projection)
        if variance is not None:
            self.variance_panel.set_title(variance_title)
            self.variance_panel.set_volume(first_channel(variance), self.z, self.max_projection)
        else:
            self.variance_panel.set_title("Variance")
            self.variance_panel.clear(NO_UNCERTAINTY_NOTE)
        if not is_diffusion:
            self.frames = None
            self.player.set_frame_count(0)
            self.denoising_panel.set_title("Denoising")
            self.denoising_panel.clear(UNET_DENOISING_NOTE)
        elif frames is not None and len(frames):
            stack = np.asarray(frames, dtype=np.float32)
            self.frames = stack[:, 0] if stack.ndim == 5 else stack
            self.player.set_frame_count(len(self.frames), frame_labels)
            self._show_frame(len(self.frames) - 1)
        self.set_overlay(was_overlay)

    def _show_frame(self, index: int) -> None:
        if self.frames is None or not 0 <= index < len(self.frames):
            return
        self.denoising_panel.volume = self.frames[index]
        self.denoising_panel.show_plane(self.z, self.max_projection, auto_contrast=True)
        self.denoising_panel.set_title(f"Denoising — {self.player.label.text()}")

    # --- shared plane choice --------------------------------------------------------------
    def set_depth(self, depth: int) -> None:
        self.z_slider.blockSignals(True)
        self.z_slider.setRange(0, max(depth - 1, 0))
        self.z = min(self.z, max(depth - 1, 0)) if depth > 1 else 0
        if depth > 1 and self.z == 0:
            self.z = depth // 2
        self.z_slider.setValue(self.z)
        self.z_slider.blockSignals(False)
        self.z_slider.setEnabled(depth > 1 and not self.max_projection)
        self.max_projection_box.setEnabled(depth > 1)
        self._update_z_label(depth)

    def _update_z_label(self, depth: int | None = None) -> None:
        depth = self.z_slider.maximum() + 1 if depth is None else depth
        if depth <= 1:
            self.z_label.setText("2D")
        elif self.max_projection:
            self.z_label.setText(f"max of {depth}")
        else:
            self.z_label.setText(f"z {self.z + 1}/{depth}")

    def set_z(self, z: int) -> None:
        self.z = int(z)
        self._update_z_label()
        self._refresh_planes()

    def set_max_projection(self, enabled: bool) -> None:
        self.max_projection = bool(enabled)
        if self.max_projection_box.isChecked() != self.max_projection:
            self.max_projection_box.setChecked(self.max_projection)
        self.z_slider.setEnabled(self.z_slider.maximum() > 0 and not self.max_projection)
        self._update_z_label()
        self._refresh_planes()

    def _refresh_planes(self) -> None:
        for panel in self.panels:
            panel.show_plane(self.z, self.max_projection)
        if self.overlay_active:
            self._render_overlay()
        self.planeChanged.emit()

    # --- overlay --------------------------------------------------------------------------
    def set_overlay(self, enabled: bool) -> None:
        """Show the prediction in colour over the bright-field, in the Prediction panel (off while there
        is no prediction). ``overlay_active`` is the one state; the box and View ▸ Overlay follow it."""
        enabled = bool(enabled) and self.prediction_panel.plane is not None
        if self.overlay_box.isChecked() != enabled:
            self.overlay_box.blockSignals(True)
            self.overlay_box.setChecked(enabled)
            self.overlay_box.blockSignals(False)
        if enabled != self.overlay_active:
            self.overlay_active = enabled
            if enabled:
                self._render_overlay()
            else:
                self.prediction_panel.set_rgb(None)
            self._show_prediction_title()
        self.overlayChanged.emit(enabled)  # also when refused: a toggled action or box goes back

    def set_prediction_note(self, text: str, colour: str | None = None, *, framed: bool = False) -> None:
        """A few words after the Prediction panel's title (e.g. "not trustworthy") in ``colour``;
        ``framed`` also draws the panel's frame in it. "" removes them."""
        self.prediction_note = (text, colour)
        self.prediction_panel.set_frame_colour(colour if text and framed else None)
        self._show_prediction_title()

    def _show_prediction_title(self) -> None:
        title = "Prediction over input (overlay)" if self.overlay_active else self.prediction_title
        text, colour = self.prediction_note
        self.prediction_panel.set_title(f"{title} — {text}" if text else title, colour if text else None)

    def _render_overlay(self) -> None:
        base, top = self.input_panel.plane, self.prediction_panel.plane
        if base is None or top is None or base.shape != top.shape:
            return
        if self.input_panel.levels is None or self.prediction_panel.levels is None:
            return
        self.prediction_panel.set_rgb(overlay_rgb(base, self.input_panel.levels, top, self.prediction_panel.levels))

    def _on_levels_changed(self, *_: object) -> None:
        if self.overlay_active:
            self._render_overlay()

    # --- crosshair ------------------------------------------------------------------------
    def grab_without_crosshair(self) -> QImage:
        """The panels as an image for the exported PNG: the mouse's crosshair is not part of the figure."""
        lines = [line for panel in self.panels for line in (panel.v_line, panel.h_line) if line.isVisible()]
        for line in lines:
            line.setVisible(False)
        try:
            return self.grab().toImage()
        finally:
            for line in lines:
                line.setVisible(True)

    def _on_mouse_moved(self, source: ImagePanel, scene_pos: QPointF) -> None:
        if not source.view_box.sceneBoundingRect().contains(scene_pos):
            return
        point = source.view_box.mapSceneToView(scene_pos)
        self.probe(point.x(), point.y())

    def probe(self, x: float, y: float) -> str:
        """Put the crosshair at view position (x, y) and report every panel's value there."""
        col, row = int(np.floor(x)), int(np.floor(y))
        inside = self.input_panel.value_at(row, col) is not None
        for panel in self.panels:
            panel.set_crosshair(col + 0.5 if inside else None, row + 0.5 if inside else None)
        if not inside:
            self.hoverText.emit("")
            return ""
        where = f"x {col}  y {row}"
        if self.z_slider.maximum() > 0:
            where += "  max-z" if self.max_projection else f"  z {self.z}"
        parts = [where]
        for panel in self.panels:
            value = panel.value_at(row, col)
            shown = format_variance(value) if panel is self.variance_panel else format_value(value)
            parts.append(f"{panel.title} {shown}")
            tint = panel.tint_value_at(row, col) if panel.shows_tint else None
            if tint is not None:
                parts.append(f"{panel.tint_name} {tint:.2f}")
        text = "   |   ".join(parts)
        self.hoverText.emit(text)
        return text
