"""One image panel: a pyqtgraph view with its own auto-contrast, histogram/LUT and a message line.

A panel holds a (Z, Y, X) volume and shows one plane of it (or its max projection); the plane
choice is shared by all panels and set from outside with ``show_plane``. A huge image's volume is
an overview (``scale`` full-resolution pixels per overview pixel, drawn at full-resolution
coordinates) and may carry a full-resolution ``detail`` region drawn on top of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from labelfree_app.gui.files.drops import FileDrops

LOW_PERCENTILE, HIGH_PERCENTILE = 0.02, 99.8
_MAX_LEVEL_SAMPLES = 1 << 18
HISTOGRAM_HEIGHT = 70
FRAME_WIDTH = 3


def auto_levels(plane: np.ndarray) -> tuple[float, float]:
    """Display range from the 0.02 / 99.8 percentiles of the finite pixels (as the Allen notebook)."""
    flat = np.asarray(plane, dtype=np.float32).ravel()
    if flat.size > _MAX_LEVEL_SAMPLES:  # a strided sample is plenty for two percentiles
        flat = flat[:: flat.size // _MAX_LEVEL_SAMPLES + 1]
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(flat, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if not high > low:
        high = low + 1.0
    return float(low), float(high)


def plane_of(volume: np.ndarray, z: int, max_projection: bool, project: Any = np.max) -> np.ndarray:
    """The plane of a (Z, Y, X) volume to show: plane ``z`` (clamped) or the projection over z
    (``project``: the maximum, or e.g. ``np.min`` for the least familiar plane of a trust map)."""
    if volume.ndim == 2:
        return volume
    if max_projection and volume.shape[0] > 1:
        return project(volume, axis=0)
    return volume[int(np.clip(z, 0, volume.shape[0] - 1))]


class DropGraphicsWidget(FileDrops, pg.GraphicsLayoutWidget):
    """A graphics layout that accepts dropped files and reports them with ``filesDropped``."""

    filesDropped = Signal(list)

    def __init__(self) -> None:
        super().__init__()
        self.setAcceptDrops(True)

    def files_dropped(self, paths: list[Path]) -> None:
        self.filesDropped.emit(paths)

class ImagePanel(QWidget):
    """Title, image view with crosshair, histogram/LUT, and a centred message when empty."""

    filesDropped = Signal(list)

    def __init__(self, title: str, *, colormap: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.volume: np.ndarray | None = None
        self.plane: np.ndarray | None = None
        self.levels: tuple[float, float] | None = None
        self.scale = 1  # full-resolution pixels per shown pixel (an overview's block size)
        self.full_size: tuple[int, int] | None = None  # (Y, X) at full resolution when scaled
        self.detail: np.ndarray | None = None  # (Z, h, w) full-resolution region over an overview
        self.detail_origin = (0, 0)  # its (y0, x0)

        self.graphics = DropGraphicsWidget()
        self.graphics.filesDropped.connect(self.filesDropped)
        self.graphics.ci.setContentsMargins(2, 2, 2, 2)
        self.title_label = self.graphics.addLabel(title, row=0, col=0, size="10pt")
        self.view_box: pg.ViewBox = self.graphics.addViewBox(row=1, col=0, lockAspect=True, invertY=True)
        self.view_box.setMenuEnabled(False)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.view_box.addItem(self.image_item)
        # Full resolution over the overview; both are averaged down to the screen's pixels when drawn.
        self.detail_item = pg.ImageItem(axisOrder="row-major", autoDownsample=True)
        self.detail_item.setZValue(1)
        self.detail_item.setVisible(False)
        self.view_box.addItem(self.detail_item)
        # An RGB layer drawn over the image (the overlay view); the histogram keeps driving the
        # levels of ``image_item`` underneath, so the layout never changes when it is shown.
        self.rgb_item = pg.ImageItem(axisOrder="row-major")
        self.rgb_item.setZValue(5)
        self.rgb_item.setVisible(False)
        self.view_box.addItem(self.rgb_item)
        # A translucent RGBA layer over everything (e.g. the trust map's tint), with the values it shows.
        self.tint_item = pg.ImageItem(axisOrder="row-major")
        self.tint_item.setZValue(6)
        self.tint_item.setVisible(False)
        self.view_box.addItem(self.tint_item)
        self.tint_values: np.ndarray | None = None
        self.tint_name = ""
        # Under the image, so four panels side by side keep their width for pixels.
        self.histogram = pg.HistogramLUTItem(image=self.image_item, orientation="horizontal")
        self.histogram.setMaximumHeight(HISTOGRAM_HEIGHT)
        self.graphics.addItem(self.histogram, row=2, col=0)
        if colormap:
            self.histogram.gradient.setColorMap(pg.colormap.get(colormap))
        self.histogram.sigLevelsChanged.connect(self._on_levels_changed)
        self.histogram.sigLevelChangeFinished.connect(self._on_levels_changed)
        self.histogram.gradient.sigGradientChanged.connect(self._follow_lookup_table)

        pen = pg.mkPen((255, 210, 0, 150), width=1)
        self.v_line = pg.InfiniteLine(angle=90, movable=False, pen=pen)
        self.h_line = pg.InfiniteLine(angle=0, movable=False, pen=pen)
        for line in (self.v_line, self.h_line):
            line.setVisible(False)
            line.setZValue(10)
            self.view_box.addItem(line, ignoreBounds=True)

        self.message_item = pg.TextItem("", color=(200, 200, 200), anchor=(0.5, 0.5))
        self.message_item.setZValue(20)
        self.view_box.addItem(self.message_item, ignoreBounds=True)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)
        self.set_message("")

    # --- content --------------------------------------------------------------------------
    def set_volume(self, volume: np.ndarray | None, z: int = 0, max_projection: bool = False, *,
                   scale: int = 1, full_size: tuple[int, int] | None = None) -> None:
        """Hold a new (Z, Y, X) volume and show its plane with fresh auto-contrast; an overview
        passes its ``scale`` and the full-resolution (Y, X) ``full_size``."""
        if max(1, int(scale)) != self.scale or (tuple(full_size) if full_size else None) != self.full_size:
            self.plane = None  # another scale: laid out afresh (view range, contrast)
        self.scale, self.full_size = max(1, int(scale)), (tuple(full_size) if full_size else None)
        self.set_detail(None)
        self.volume = None if volume is None else np.asarray(volume, dtype=np.float32)
        if self.volume is not None and self.volume.ndim == 2:
            self.volume = self.volume[np.newaxis]
        if self.volume is None:
            self.clear()
            return
        self.show_plane(z, max_projection, auto_contrast=True)

    def show_plane(self, z: int, max_projection: bool, *, auto_contrast: bool = False) -> None:
        if self.volume is None:
            return
        self.set_plane(plane_of(self.volume, z, max_projection), auto_contrast=auto_contrast)
        if self.detail is not None:
            self._draw_detail(plane_of(self.detail, z, max_projection))

    def set_plane(
        self, plane: np.ndarray, *, auto_contrast: bool = True, levels: tuple[float, float] | None = None
    ) -> None:
        """Show a 2D plane; keep the user's contrast unless ``auto_contrast`` (or nothing shown yet)."""
        new_shape = self.plane is None or self.plane.shape != plane.shape
        self.plane = plane
        self._show_histogram(True)
        if levels is not None:
            self.levels = (float(levels[0]), float(levels[1]))
        elif auto_contrast or new_shape or self.levels is None:
            self.levels = auto_levels(plane)
        self.image_item.setImage(plane, autoLevels=False, levels=self.levels, autoDownsample=self.scale > 1)
        if self.scale > 1:  # an overview pixel covers scale × scale full-resolution pixels
            self.image_item.setRect(QRectF(0, 0, plane.shape[1] * self.scale, plane.shape[0] * self.scale))
        else:
            self.image_item.resetTransform()
        self.detail_item.setLevels(self.levels)
        self.histogram.setLevels(*self.levels)
        if auto_contrast or new_shape:
            low, high = self.levels
            margin = 0.1 * (high - low)
            self.histogram.setHistogramRange(low - margin, high + margin)
        self.set_message("")
        if new_shape:
            self.view_box.autoRange(padding=0.0)

    def set_detail(self, region: np.ndarray | None, y0: int = 0, x0: int = 0, *, z: int = 0,
                   max_projection: bool = False) -> None:
        """Draw a full-resolution (Z, h, w) region with its top-left at (``y0``, ``x0``) over the
        overview, in the panel's contrast; None removes it."""
        self.detail = None if region is None else np.asarray(region, dtype=np.float32)
        self.detail_origin = (int(y0), int(x0))
        if self.detail is None:
            self.detail_item.setVisible(False)
            self.detail_item.clear()
            return
        self._draw_detail(plane_of(self.detail, z, max_projection))

    def _draw_detail(self, plane: np.ndarray) -> None:
        y0, x0 = self.detail_origin
        self.detail_item.setImage(plane, autoLevels=False, levels=self.levels or auto_levels(plane))
        self.detail_item.setLookupTable(self.histogram.getLookupTable)
        self.detail_item.setRect(QRectF(x0, y0, plane.shape[1], plane.shape[0]))
        self.detail_item.setVisible(True)

    def _follow_lookup_table(self) -> None:
        if self.detail is not None:
            self.detail_item.setLookupTable(self.histogram.getLookupTable)

    def _show_histogram(self, shown: bool) -> None:
        # Transparent rather than hidden: every panel keeps the same view size, so the linked
        # views line up pixel for pixel.
        self.histogram.setOpacity(1.0 if shown else 0.0)
        self.histogram.setEnabled(shown)

    def set_rgb(self, rgb: np.ndarray | None) -> None:
        """Draw an (Y, X, 3) image in 0..1 over the panel's image, or remove it (None)."""
        if rgb is None:
            self.rgb_item.setVisible(False)
            self.rgb_item.clear()
            return
        self.rgb_item.setImage(rgb, autoLevels=False, levels=(0.0, 1.0))
        self.rgb_item.setVisible(True)

    @property
    def shows_rgb(self) -> bool:
        return self.rgb_item.isVisible()

    def set_tint(self, rgba: np.ndarray | None, values: np.ndarray | None = None, name: str = "") -> None:
        """Draw an (Y, X, 4) RGBA layer in 0..1 over the panel (None removes it); ``values`` (Y, X)
        are what the tint shows, reported under the cursor as ``name``."""
        self.tint_values = None if rgba is None or values is None else np.asarray(values)
        self.tint_name = name
        if rgba is None:
            self.tint_item.setVisible(False)
            self.tint_item.clear()
            return
        self.tint_item.setImage(np.asarray(rgba, dtype=np.float32), autoLevels=False, levels=(0.0, 1.0))
        self.tint_item.setVisible(True)

    @property
    def shows_tint(self) -> bool:
        return self.tint_item.isVisible()

    def tint_value_at(self, row: int, col: int) -> float | None:
        values = self.tint_values
        if values is None or not (0 <= row < values.shape[0] and 0 <= col < values.shape[1]):
            return None
        return float(values[row, col])

    def set_frame_colour(self, colour: str | None) -> None:
        """A coloured border around the view (e.g. a prediction that should not be trusted); None: none."""
        self.view_box.setBorder(pg.mkPen(colour, width=FRAME_WIDTH) if colour else None)

    def _on_levels_changed(self) -> None:
        if self.plane is not None:
            low, high = self.histogram.getLevels()
            self.levels = (float(low), float(high))
            self.detail_item.setLevels(self.levels)

    def clear(self, message: str = "") -> None:
        self.volume = None
        self.plane = None
        self.levels = None
        self.scale, self.full_size = 1, None
        self.set_detail(None)
        self.set_rgb(None)
        self.set_tint(None)
        self.image_item.clear()
        self._show_histogram(False)  # nothing to adjust
        self.set_message(message)

    def set_message(self, text: str) -> None:
        """A centred grey note over the view (e.g. "no uncertainty for this model")."""
        self.message_item.setText(text)
        self.message_item.setVisible(bool(text))
        rect = self.view_box.viewRect()
        self.message_item.setPos(rect.center())

    @property
    def message(self) -> str:
        return self.message_item.toPlainText() if self.message_item.isVisible() else ""

    def set_title(self, text: str, colour: str | None = None) -> None:
        """The title over the view; ``colour`` (e.g. "#c62828") makes it stand out (``title``, the
        panel's name in the cursor read-out, stays)."""
        if colour:
            self.title_label.setText(text, size="10pt", color=colour, bold=True)
        else:
            self.title_label.setText(text, size="10pt")

    def auto_contrast(self) -> None:
        if self.plane is not None:
            self.set_plane(self.plane, auto_contrast=True)

    # --- probing --------------------------------------------------------------------------
    def value_at(self, row: int, col: int) -> float | None:
        """The value at full-resolution pixel (row, col): the detail's where it covers it, else the
        (overview) plane's."""
        plane = self.plane
        height, width = self.full_size or (plane.shape if plane is not None else (0, 0))
        if plane is None or not (0 <= row < height and 0 <= col < width):
            return None
        detail = self.detail_item.image if self.detail is not None else None
        if detail is not None:
            y0, x0 = self.detail_origin
            if 0 <= row - y0 < detail.shape[0] and 0 <= col - x0 < detail.shape[1]:
                return float(detail[row - y0, col - x0])
        return float(plane[row // self.scale, col // self.scale])

    def set_crosshair(self, x: float | None, y: float | None) -> None:
        visible = x is not None and y is not None
        self.v_line.setVisible(visible)
        self.h_line.setVisible(visible)
        if visible:
            self.v_line.setPos(x)
            self.h_line.setPos(y)

    def link_to(self, other: "ImagePanel") -> None:
        self.view_box.setXLink(other.view_box)
        self.view_box.setYLink(other.view_box)
