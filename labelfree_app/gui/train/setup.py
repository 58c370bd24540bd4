"""The Train page's first step: checked paired images (``PairsBox``) and the model choices.

``choices()`` returns what ``training.presets.config_from_choices`` needs; the Start button is on
only while the last check of the pairs passed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from labelfree_app.gui.dialogs import folder_row
from labelfree_app.gui.train.pairs import PairsBox
from labelfree_app.models.fit import best_start, start_problem

SCRATCH = "Scratch (a new network)"
FINETUNE_MINUTES = 2.0

AUTO_REGION, GIVEN_REGION = 0, 1


class SetupPage(QWidget):
    """Emits ``startRequested`` from its Start button."""

    startRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.config_changes: dict[str, Any] = {}  # extra TrainConfig fields (tests, advanced use)
        self.preferred_start: str | None = None  # Start from this model whenever it fits (until the user picks)
        self.pairs_box = PairsBox()
        self._build()
        self.pairs_box.checked.connect(self.start_button.setEnabled)
        self.pairs_box.checked.connect(lambda ok: self._fill_start_models() if ok else None)
        self.start_button.setEnabled(False)

    def _build(self) -> None:
        self.type_combo = QComboBox()
        self.type_combo.addItem("U-Net (one prediction, fast)", "unet")
        self.type_combo.addItem("Diffusion (samples and a variance map)", "diffusion")
        self.preset_combo = QComboBox()
        self.preset_combo.addItem("Fast (CPU)", "fast")
        self.preset_combo.addItem("Quality (GPU)", "quality")
        self.preset_combo.addItem("Quick fine-tune (2 min)", "finetune")
        self.preset_combo.setToolTip("Fast: a small network on small patches. Quality: a full-size network; "
                                     "use a GPU and a budget of hours. Quick fine-tune: adapt the model under "
                                     "'Start from' to your pairs in two minutes.")
        self.models: list[Any] = []
        self.start_combo = QComboBox()
        self.start_combo.setToolTip("Fine-tune an installed model (its weights, size and normalization; a lower "
                                    "learning rate and early stopping) or train a new network from scratch")
        self.start_note = QLabel("")
        self.start_note.setWordWrap(True)
        self.type_combo.currentIndexChanged.connect(lambda _: self._fill_start_models())
        self.preset_combo.currentIndexChanged.connect(self._on_preset)
        self.start_combo.currentIndexChanged.connect(lambda _: self._show_start_note())
        self.start_combo.activated.connect(self._start_picked)
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
        self.out_edit, out_row = folder_row("a new folder in LabelFree's user folder", self._choose_out_dir)
        self.start_button = QPushButton("Start training")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.startRequested)
        self.message_label = QLabel("")
        self.message_label.setWordWrap(True)
        self.message_label.setStyleSheet("color: #b00020")

        model_box = QGroupBox("2. Model")
        form = QFormLayout(model_box)
        form.addRow("Model type:", self.type_combo)
        form.addRow("Start from:", self.start_combo)
        form.addRow("", self.start_note)
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

        self.intro_label = QLabel("")  # what a prepared run (Improve for my images…) will do
        self.intro_label.setWordWrap(True)
        self.intro_label.setStyleSheet("background: #eef3fb; border: 1px solid #9db4d8; padding: 6px")
        self.intro_label.hide()
        row = QHBoxLayout()
        row.addWidget(self.pairs_box, 3)
        row.addWidget(model_box, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro_label)
        layout.addLayout(row, 1)

    # --- start from ----------------------------------------------------------------------------
    def set_models(self, models: list[Any]) -> None:
        """The installed models (``ModelEntry`` values with manifests) that a run may start from."""
        self.models = [m for m in models if getattr(m, "manifest", None) is not None]
        self._fill_start_models()

    def _planes(self) -> int:
        pairs = self.pairs_box.pairs
        return int(pairs[0].input_shape[0]) if pairs else 1

    def _fill_start_models(self) -> None:
        """Models that fit the checked pairs and the model type; the best one selected (``models.fit``)."""
        planes, model_type = self._planes(), str(self.type_combo.currentData())
        fitting = [m for m in self.models if start_problem(m.manifest, planes, model_type) is None]
        best = best_start(fitting, planes, model_type)
        keep = self.start_combo.currentData()
        self.start_combo.blockSignals(True)
        self.start_combo.clear()
        self.start_combo.addItem(SCRATCH, None)
        for model in fitting:
            self.start_combo.addItem(f"{model.name} ({model.id})", model.id)
        ids = [m.id for m in fitting]
        if self.preferred_start in ids:
            wanted = self.preferred_start
        else:
            wanted = keep if keep in ids else (best.id if best is not None else None)
        self.start_combo.setCurrentIndex(max(self.start_combo.findData(wanted), 0) if wanted else 0)
        self.start_combo.blockSignals(False)
        self._show_start_note()

    def _show_start_note(self) -> None:
        model_id = self.start_combo.currentData()
        others = len(self.models) - (self.start_combo.count() - 1)
        if model_id:
            text = ("Fine-tunes this model: its network and normalization, a fifth of the learning rate, "
                    "early stopping on the validation images.")
        else:
            text = "A new network with random weights (needs more time and pairs)."
        if others > 0:
            text += f" {others} installed model(s) do not fit these inputs or this model type."
        self.start_note.setText(text)

    def _start_picked(self, _: int) -> None:
        self.preferred_start = None  # the user's own choice from now on

    def prepare_fine_tune(self, model_id: str, model_type: str, intro: str = "") -> None:
        """Start from ``model_id`` (a ``model_type`` model) with the Quick fine-tune preset; ``intro``
        is a sentence above the page saying what will happen."""
        self.type_combo.setCurrentIndex(max(self.type_combo.findData(model_type), 0))
        self.preferred_start = model_id
        self._fill_start_models()
        self.preset_combo.setCurrentIndex(max(self.preset_combo.findData("finetune"), 0))
        self._on_preset(self.preset_combo.currentIndex())  # the budget even if the preset was already chosen
        self.set_intro(intro)

    def set_intro(self, text: str) -> None:
        self.intro_label.setText(text)
        self.intro_label.setVisible(bool(text))

    def _on_preset(self, _: int) -> None:
        if self.preset_combo.currentData() == "finetune":
            self.minutes_spin.setValue(FINETUNE_MINUTES)
            if not self.start_combo.currentData():
                best = best_start(self.models, self._planes(), str(self.type_combo.currentData()))
                if best is not None:
                    self.start_combo.setCurrentIndex(max(self.start_combo.findData(best.id), 0))

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
            "init_from": self.start_combo.currentData(),
            "changes": dict(self.config_changes),
        }
