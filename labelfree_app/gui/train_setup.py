"""The Train page's first step: checked paired images (``PairsBox``) and the model choices.

``choices()`` returns what ``training.presets.config_from_choices`` needs; the Start button is on
only while the last check of the pairs passed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QPushButton, QSpinBox, QWidget)

from labelfree_app.gui.train_pairs import PairsBox

AUTO_REGION, GIVEN_REGION = 0, 1


class SetupPage(QWidget):
    """Emits ``startRequested`` from its Start button."""

    startRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.config_changes: dict[str, Any] = {}  # extra TrainConfig fields (tests, advanced use)
        self.pairs_box = PairsBox()
        self._build()
        self.pairs_box.checked.connect(self.start_button.setEnabled)
        self.start_button.setEnabled(False)

    def _build(self) -> None:
        self.type_combo = QComboBox()
        self.type_combo.addItem("U-Net (one prediction, fast)", "unet")
        self.type_combo.addItem("Diffusion (samples and a variance map)", "diffusion")
        self.preset_combo = QComboBox()
        self.preset_combo.addItem("Fast (CPU)", "fast")
        self.preset_combo.addItem("Quality (GPU)", "quality")
        self.preset_combo.setToolTip("Fast: a small network on small patches. Quality: a full-size network; "
                                     "use a GPU and a budget of hours.")
        self.minutes_spin = QDoubleSpinBox()
        self.minutes_spin.setRange(0.1, 7 * 24 * 60)
        self.minutes_spin.setDecimals(1)
        self.minutes_spin.setValue(15.0)
        self.minutes_spin.setSuffix(" min")
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(0, 10_000_000)
        self.steps_spin.setSingleStep(500)
        self.steps_spin.setSpecialValueText("the preset's steps")
        self.steps_spin.setSuffix(" steps")
        self.steps_spin.setToolTip("Training stops at this many steps or at the time budget, whichever comes first")
        self.val_combo = QComboBox()
        self.val_combo.addItem("Bottom-right corner of every image (auto)")
        self.val_combo.addItem("This region of every image:")
        self.val_edit = QLineEdit()
        self.val_edit.setPlaceholderText("y0:y1,x0:x1, e.g. 384:512,384:512")
        self.val_edit.setEnabled(False)
        self.val_combo.currentIndexChanged.connect(lambda index: self.val_edit.setEnabled(index == GIVEN_REGION))
        self.target_edit = QLineEdit()
        self.target_edit.setPlaceholderText("e.g. DNA (Hoechst)")
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("optional display name")
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("a new folder in LabelFree's user folder")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._choose_out_dir)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(browse)
        self.start_button = QPushButton("Start training")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.startRequested)
        self.message_label = QLabel("")
        self.message_label.setWordWrap(True)
        self.message_label.setStyleSheet("color: #b00020")

        model_box = QGroupBox("2. Model")
        form = QFormLayout(model_box)
        form.addRow("Model type:", self.type_combo)
        form.addRow("Size:", self.preset_combo)
        form.addRow("Time budget:", self.minutes_spin)
        form.addRow("At most:", self.steps_spin)
        form.addRow("Validation:", self.val_combo)
        form.addRow("", self.val_edit)
        hint = QLabel("Or tick whole pairs in the table to validate on them instead.")
        hint.setWordWrap(True)
        form.addRow("", hint)
        form.addRow("Predicts:", self.target_edit)
        form.addRow("Model name:", self.name_edit)
        form.addRow("Save in:", out_row)
        form.addRow(self.start_button)
        form.addRow(self.message_label)

        layout = QHBoxLayout(self)
        layout.addWidget(self.pairs_box, 3)
        layout.addWidget(model_box, 2)

    def _choose_out_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the new model", self.out_edit.text())
        if folder:
            self.out_edit.setText(str(Path(folder) / "my-model"))

    def say(self, sentence: str) -> None:
        """Show why training cannot start (one sentence)."""
        self.message_label.setText(sentence)

    def ready(self) -> bool:
        return bool(self.pairs_box.pairs) and not self.pairs_box.checking

    def choices(self) -> dict[str, Any]:
        """The checked pairs split into training and validation pairs, and the model choices."""
        pairs = self.pairs_box.pairs
        held_out = set(self.pairs_box.validation_rows())
        region = None
        if self.val_combo.currentIndex() == GIVEN_REGION:
            region = self.val_edit.text().strip() or None
        elif not held_out:
            region = "auto"
        return {
            "pairs": [p.spec for i, p in enumerate(pairs) if i not in held_out],
            "val_pairs": [p.spec for i, p in enumerate(pairs) if i in held_out],
            "shapes": [p.yx for p in pairs],
            "val_region": region,
            "model_type": str(self.type_combo.currentData()),
            "preset": str(self.preset_combo.currentData()),
            "minutes": float(self.minutes_spin.value()),
            "max_steps": int(self.steps_spin.value()) or None,
            "target_name": self.target_edit.text().strip() or "fluorescence",
            "name": self.name_edit.text().strip(),
            "out_dir": self.out_edit.text().strip(),
            "changes": dict(self.config_changes),
        }
