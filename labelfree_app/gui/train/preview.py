"""Small image grids for the Train page: pairs side by side (input | target | overlay) and the live
validation crop (input | target | prediction). Views in a grid pan and zoom together."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyqtgraph as pg

from labelfree_app.gui.viewer.image_panel import auto_levels


def scaled(plane: np.ndarray) -> np.ndarray:
    """A plane mapped to 0..1 by its display range (for colour overlays)."""
    low, high = auto_levels(plane)
    return np.clip((np.asarray(plane, np.float32) - low) / (high - low), 0.0, 1.0)


def overlay_rgb(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Input in grey, target in magenta: misregistered pairs show coloured fringes."""
    grey, magenta = scaled(source), scaled(target)
    if grey.shape != magenta.shape:
        return np.stack([grey] * 3, axis=-1)
    rgb = np.stack([0.6 * grey + magenta, 0.6 * grey, 0.6 * grey + magenta], axis=-1)
    return (np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)


class ImageGrid(pg.GraphicsLayoutWidget):
    """Rows × columns of titled image views with linked pan and zoom."""

    def __init__(self, columns: Sequence[str], rows: int = 1) -> None:
        super().__init__()
        self.columns = list(columns)
        self.ci.setContentsMargins(2, 2, 2, 2)
        self.titles: list[list[pg.LabelItem]] = []
        self.items: list[list[pg.ImageItem]] = []
        self.views: list[list[pg.ViewBox]] = []
        first: pg.ViewBox | None = None
        for row in range(rows):
            titles, items, views = [], [], []
            for col, name in enumerate(self.columns):
                titles.append(self.addLabel(name, row=2 * row, col=col, size="9pt"))
                view = self.addViewBox(row=2 * row + 1, col=col, lockAspect=True, invertY=True)
                view.setMenuEnabled(False)
                item = pg.ImageItem(axisOrder="row-major")
                view.addItem(item)
                if first is None:
                    first = view
                else:
                    view.setXLink(first)
                    view.setYLink(first)
                items.append(item)
                views.append(view)
            self.titles.append(titles)
            self.items.append(items)
            self.views.append(views)

    def set_image(self, row: int, col: int, image: np.ndarray | None, title: str | None = None) -> None:
        """Show a 2D plane (auto-contrast) or an (Y, X, 3) uint8 RGB image; None clears."""
        item = self.items[row][col]
        if image is None:
            item.clear()
        elif image.ndim == 3 and image.shape[-1] == 3:
            item.setImage(image, autoLevels=False, levels=(0, 255))
        else:
            item.setImage(np.asarray(image, np.float32), autoLevels=False, levels=auto_levels(image))
        if title is not None:
            self.titles[row][col].setText(title, size="9pt")

    def fit(self) -> None:
        self.views[0][0].autoRange(padding=0.02)

    def has_image(self, row: int, col: int) -> bool:
        return self.items[row][col].image is not None


class PairPreview(ImageGrid):
    """One checked pair, large enough to judge: input | target | overlay (the pair picked in the
    table; three rows of thumbnails were about 65 px tall)."""

    ROWS = 1

    def __init__(self) -> None:
        super().__init__(["Input (transmitted light)", "Target (fluorescence)", "Overlay"], rows=self.ROWS)
        self.setMinimumHeight(240)

    def show_pairs(self, checked: Sequence[object]) -> None:
        """``checked``: ``CheckedPair`` values; those with thumbnails are shown."""
        shown = [c for c in checked if getattr(c, "input_thumb", None) is not None][: self.ROWS]
        for row in range(self.ROWS):
            pair = shown[row] if row < len(shown) else None
            if pair is None:
                for col in range(3):
                    self.set_image(row, col, None, "")
                continue
            name = getattr(pair.spec, "target", "")
            self.set_image(row, 0, pair.input_thumb, f"Input — {pair.describe_size()}")
            self.set_image(row, 1, pair.target_thumb, f"Target — {str(name).rsplit('/', 1)[-1]}")
            self.set_image(row, 2, overlay_rgb(pair.input_thumb, pair.target_thumb), "Overlay (target magenta)")
        if shown:
            self.fit()
