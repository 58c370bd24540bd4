"""A huge image's result, streamed to files: shown as overviews that load full resolution on zoom.

The Prediction (and, with test-time augmentation, the Variance) panel shows the written file the
way the Input panel shows the huge input (``viewer.large_image.OverviewView``): a block-mean
overview built from the file on the thread pool, at full-resolution coordinates, linked to the
input, and the visible region read from the file at full resolution once zoomed in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from labelfree_app.gui.backend import Backend, channel_volume
from labelfree_app.gui.streamed_run import SavedResult
from labelfree_app.gui.viewer.large_image import REGION_MAX_PIXELS, SETTLE_MS, OverviewView
from labelfree_app.gui.viewer.panel_grid import NO_UNCERTAINTY_NOTE, UNET_DENOISING_NOTE, PanelGrid


class SavedResultView(QObject):
    """Fills the result panels from a record's ``SavedResult``; ``message(text)`` for the status bar."""

    message = Signal(str)

    def __init__(self, panels: PanelGrid, backend: Backend, *, region_max_pixels: int = REGION_MAX_PIXELS,
                 settle_ms: int = SETTLE_MS) -> None:
        super().__init__()
        self.panels = panels
        self.backend = backend
        self.prediction = OverviewView(panels, panels.prediction_panel, "Prediction",
                                       lambda overview: self._draw(panels.prediction_panel, overview),
                                       region_max_pixels=region_max_pixels, settle_ms=settle_ms)
        self.variance = OverviewView(panels, panels.variance_panel, "Variance (TTA)",
                                     lambda overview: self._draw(panels.variance_panel, overview),
                                     region_max_pixels=region_max_pixels, settle_ms=settle_ms)
        for view in (self.prediction, self.variance):
            view.message.connect(self.message)

    def stop(self) -> None:
        """Forget the shown result: reads in flight are dropped when they come back."""
        self.prediction.stop()
        self.variance.stop()

    def show(self, record: Any, prediction_title: str = "Prediction") -> None:
        """Show ``record.result`` (a ``SavedResult``): its files as overviews, read in the background
        once per result (kept in ``record.extra``)."""
        result: SavedResult = record.result
        self.stop()
        panels = self.panels
        panels.clear_results()
        panels.prediction_title = self.prediction.label = prediction_title
        panels.denoising_panel.clear(UNET_DENOISING_NOTE)
        cache = record.extra.setdefault("saved_overviews", {})
        self.prediction.show_volume(lambda: self._open(result.prediction), cache, result.prediction,
                                    f"Reading an overview of {result.prediction.name}…")
        if result.variance is not None:
            self.variance.show_volume(lambda: self._open(result.variance), cache, result.variance,
                                      f"Reading an overview of {result.variance.name}…")
        else:
            panels.variance_panel.clear(NO_UNCERTAINTY_NOTE)

    def _open(self, path: Path | None) -> Any:
        """The written file's first channel as a lazy (Z, Y, X) volume (on the thread pool)."""
        return channel_volume(self.backend.read_image(Path(str(path))), 0)

    def _draw(self, panel: Any, overview: Any) -> None:
        depth, height, width = overview.full_shape
        panel.set_volume(overview.pixels, self.panels.z, self.panels.max_projection, scale=overview.factor,
                         full_size=(height, width))
