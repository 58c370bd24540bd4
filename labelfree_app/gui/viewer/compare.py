"""Compare a prediction with the observed fluorescence (the Allen notebook's analysis).

Observed vs predicted, the three difference maps, Pearson r and Otsu masks side by side, all
linked for pan/zoom; a Flip toggle swaps observed and predicted in place so the eye can blink
between them. Differences are taken between z-scored images, so units do not matter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtWidgets import (QCheckBox, QDialog, QFileDialog, QGridLayout, QHBoxLayout, QLabel, QPushButton,
                               QVBoxLayout, QWidget)

from labelfree_app.errors import LabelFreeError
from labelfree_app.gui.backend import Backend
from labelfree_app.gui.viewer.compare_save import save_comparison
from labelfree_app.gui.viewer.image_panel import ImagePanel, auto_levels
from labelfree_app.io.channels import matching_channel  # noqa: F401 (the one name-part match; Compare's)

DIVERGING_COLORMAP = "CET-D1"


def zscore(plane: np.ndarray) -> np.ndarray:
    plane = np.asarray(plane, dtype=np.float32)
    std = float(plane.std())
    return (plane - float(plane.mean())) / (std if std > 0 else 1.0)


def symmetric_levels(plane: np.ndarray) -> tuple[float, float]:
    low, high = auto_levels(plane)
    bound = max(abs(low), abs(high), 1e-6)
    return -bound, bound


def dice(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """Overlap of two boolean masks (1 = identical, 0 = disjoint)."""
    a, b = np.asarray(mask_a, bool), np.asarray(mask_b, bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total


def _map_title(key: str) -> str:
    return {
        "observed_minus_predicted": "Observed − predicted",
        "predicted_minus_observed": "Predicted − observed",
        "absolute": "|Observed − predicted|",
        "abs": "|Observed − predicted|",
        "absolute_difference": "|Observed − predicted|",
    }.get(key, key.replace("_", " ").capitalize())


class CompareDialog(QDialog):
    """Shows the comparison of one observed and one predicted plane (both 2D, same shape)."""

    def __init__(
        self,
        observed: np.ndarray,
        predicted: np.ndarray,
        backend: Backend,
        *,
        where: str = "",
        source: str = "",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Compare with ground truth")
        if observed.shape != predicted.shape:
            raise ValueError(f"observed {observed.shape} and predicted {predicted.shape} differ in shape")
        self.observed = zscore(observed)
        self.predicted = zscore(predicted)
        self.pearson_r = float(backend.pearson_r(observed, predicted))
        self.maps: dict[str, np.ndarray] = {
            k: np.asarray(v, np.float32) for k, v in backend.difference_maps(self.observed, self.predicted).items()
        }
        self.observed_mask = np.asarray(backend.otsu_mask(observed), bool)
        self.predicted_mask = np.asarray(backend.otsu_mask(predicted), bool)
        self.mask_dice = dice(self.observed_mask, self.predicted_mask)
        self.flipped = False
        self.source, self.where = source, where

        self.observed_panel = ImagePanel("Observed")
        self.predicted_panel = ImagePanel("Predicted")
        self.map_panels: dict[str, ImagePanel] = {}
        for key in self.maps:
            signed = "minus" in key or (self.maps[key].min() < 0 < self.maps[key].max())
            self.map_panels[key] = ImagePanel(_map_title(key), colormap=DIVERGING_COLORMAP if signed else "magma")
        self.observed_mask_panel = ImagePanel("Otsu mask — observed")
        self.predicted_mask_panel = ImagePanel("Otsu mask — predicted")
        self.panels: list[ImagePanel] = [
            self.observed_panel,
            self.predicted_panel,
            *self.map_panels.values(),
            self.observed_mask_panel,
            self.predicted_mask_panel,
        ]
        for panel in self.panels[1:]:
            panel.link_to(self.panels[0])

        self.flip_box = QCheckBox("Flip observed / predicted")
        self.flip_box.setToolTip("Swap the two images in place to blink between them")
        self.flip_box.toggled.connect(self.set_flipped)
        self.summary_label = QLabel(self.summary())
        self.summary_label.setWordWrap(True)
        if source or where:
            self.summary_label.setText(f"{self.summary()}   ({', '.join(t for t in (source, where) if t)})")

        self.panels_widget = QWidget()  # what Save… writes as PNG
        grid = QGridLayout(self.panels_widget)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(4)
        for index, panel in enumerate(self.panels):
            grid.addWidget(panel, index // 4, index % 4)
        top = QHBoxLayout()
        top.addWidget(self.summary_label, 1)
        top.addWidget(self.flip_box)
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip("Save the panels as PNG and the figures (r, Dice) as JSON beside it")
        self.save_button.clicked.connect(self._ask_and_save)
        top.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.panels_widget, 1)
        self.resize(1400, 760)
        self._fill()

    def save_to(self, png: Path) -> list[Path]:
        """Write the panels (PNG) and the figures (JSON of the same name); says where in the summary."""
        written = save_comparison(self, png)
        self.summary_label.setText(f"{self.summary()}   Saved {written[0]} and {written[1].name}.")
        return written

    def _ask_and_save(self) -> None:
        chosen, _ = QFileDialog.getSaveFileName(self, "Save comparison", "comparison.png", "PNG (*.png)")
        if chosen:
            try:
                self.save_to(Path(chosen))
            except (OSError, LabelFreeError) as exc:
                self.summary_label.setText(f"{self.summary()}   Not saved: {exc}")

    def summary(self) -> str:
        return (
            f"Pearson r = {self.pearson_r:.3f}    Otsu mask overlap (Dice) = {self.mask_dice:.3f}    "
            "difference maps use z-scored images"
        )

    def _fill(self) -> None:
        self._show_pair()
        for key, panel in self.map_panels.items():
            values = self.maps[key]
            signed = values.min() < 0
            panel.set_plane(values, levels=symmetric_levels(values) if signed else None)
        self.observed_mask_panel.set_plane(self.observed_mask.astype(np.float32), levels=(0.0, 1.0))
        self.predicted_mask_panel.set_plane(self.predicted_mask.astype(np.float32), levels=(0.0, 1.0))

    def _show_pair(self) -> None:
        first, second = (self.predicted, self.observed) if self.flipped else (self.observed, self.predicted)
        shared = auto_levels(np.concatenate([self.observed.ravel(), self.predicted.ravel()]))
        self.observed_panel.set_title("Predicted (flipped)" if self.flipped else "Observed")
        self.predicted_panel.set_title("Observed (flipped)" if self.flipped else "Predicted")
        self.observed_panel.set_plane(first, levels=shared)
        self.predicted_panel.set_plane(second, levels=shared)

    def set_flipped(self, flipped: bool) -> None:
        self.flipped = bool(flipped)
        if self.flip_box.isChecked() != self.flipped:
            self.flip_box.setChecked(self.flipped)
        self._show_pair()
