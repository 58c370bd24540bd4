"""The Run panel's Scale box: the input's pixel size where its file does not say, and the scale search."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QGroupBox, QHBoxLayout, QLabel, QWidget

from labelfree_app.core.settings import TABLE


class ScaleControls(QGroupBox):
    """``values()`` gives the ``PredictSettings`` fields ``scale`` and ``pixel_size_um`` (core/scale.py)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Scale", parent)
        bound = TABLE["pixel_size_um"]
        self.pixel_spin = QDoubleSpinBox()
        self.pixel_spin.setObjectName("pixel_size_spin")
        self.pixel_spin.setDecimals(4)
        self.pixel_spin.setRange(0.0, float(bound.high or 1000.0))
        self.pixel_spin.setSingleStep(0.05)
        self.pixel_spin.setSuffix(" µm")
        self.pixel_spin.setSpecialValueText("from the file")
        self.pixel_spin.setToolTip("The image's pixel size, where its file does not say. Where it and the model's "
                                   "are both known, the image is resampled to the model's pixel size and back.")
        self.search_box = QCheckBox("search if unknown")
        self.search_box.setObjectName("scale_search_box")
        self.search_box.setToolTip("Also predict a central crop at 0.5-2x and use the scale the model is surest "
                                   "of (about one more prediction's time), where the pixel size is unknown. Helps "
                                   "most on microscopes the model never saw.")
        row = QHBoxLayout(self)
        row.addWidget(QLabel("Pixel size"))
        row.addWidget(self.pixel_spin, 1)
        row.addWidget(self.search_box)

    def values(self) -> dict[str, Any]:
        typed = self.pixel_spin.value()
        return {"scale": "search" if self.search_box.isChecked() else TABLE["scale"].default,
                "pixel_size_um": typed if typed >= float(TABLE["pixel_size_um"].low or 0) else None}

    def restore(self, values: dict[str, Any]) -> None:
        self.search_box.setChecked(values.get("scale") == "search")
        self.pixel_spin.setValue(float(values.get("pixel_size_um") or 0.0))
