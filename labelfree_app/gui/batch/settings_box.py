"""The batch dialog's prediction settings: what every file of the batch runs with, shown and editable.

Filled from the main window's Run panel when the dialog opens (whichever model is selected there);
the batch uses exactly what the box shows (``values``), nothing taken silently from the window.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QGroupBox, QLabel, QSpinBox, QWidget

from labelfree_app.core.settings import TABLE, is_diffusion
from labelfree_app.gui.predict.run_controls import SAMPLERS, RunControls
from labelfree_app.gui.predict.scale_controls import ScaleControls


def window_settings(controls: RunControls) -> dict[str, Any]:
    """Every prediction setting of the Run panel, diffusion and U-Net alike (None = the model's default)."""
    return {**controls.diffusion_values(), "tta": controls.tta_box.isChecked(), "device": controls.device(),
            **controls.scale_box.values()}


class BatchSettingsBox(QGroupBox):
    """TTA, diffusion samples, steps, sampler and seed, the scale, and the device, for every file of a batch."""

    def __init__(self, settings: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__("Prediction settings (every file)", parent)
        self.setObjectName("batch_settings")
        self.device = str(settings.get("device") or "auto")
        self.tta_box = QCheckBox("Test-time augmentation (U-Net models; 8× the time)")
        self.tta_box.setToolTip("Average 8 flipped and rotated predictions: better on a microscope the model never "
                                "saw; also writes their variance")
        self.tta_box.setChecked(bool(settings.get("tta")))
        self.samples_spin = self._spin("samples", settings.get("samples"), "Diffusion samples averaged per image")
        self.steps_spin = self._spin("steps", settings.get("steps"), "Denoising steps per sample (fewer is faster)")
        self.sampler_combo = QComboBox()
        self.sampler_combo.addItem("model default", None)
        for name in SAMPLERS:
            self.sampler_combo.addItem(name, name)
        self.sampler_combo.setCurrentIndex(max(self.sampler_combo.findData(settings.get("sampler")), 0))
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setValue(int(settings.get("seed") or 0))
        self.diffusion_note = QLabel("")
        self.scale_box = ScaleControls()
        self.scale_box.setTitle("")
        self.scale_box.restore(settings)
        form = QFormLayout(self)
        form.addRow("U-Net", self.tta_box)
        form.addRow("Diffusion samples", self.samples_spin)
        form.addRow("Diffusion steps", self.steps_spin)
        form.addRow("Sampler", self.sampler_combo)
        form.addRow("Seed", self.seed_spin)
        form.addRow("Scale", self.scale_box)
        form.addRow("Device", QLabel(self.device))
        form.addRow("", self.diffusion_note)

    @staticmethod
    def _spin(name: str, value: Any, tip: str) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(0, int(TABLE[name].high))
        spin.setSpecialValueText("model default")
        spin.setToolTip(tip + "; 'model default' uses the value in each model's card")
        spin.setValue(int(value or 0))
        return spin

    def values(self) -> dict[str, Any]:
        """The settings the batch runs with (``PredictSettings`` fields; None = each model's default)."""
        return {"tta": self.tta_box.isChecked(), "samples": self.samples_spin.value() or None,
                "steps": self.steps_spin.value() or None, "sampler": self.sampler_combo.currentData(),
                "seed": self.seed_spin.value(), "device": self.device, **self.scale_box.values()}

    def follow_models(self, models: Sequence[Any], checked: Callable[[], list[str]]) -> None:
        """Switch off what no ticked model uses (TTA without U-Nets, sampling without diffusion models)."""
        ticked = [m for m in models if m.id in checked()]
        diffusion = any(is_diffusion(m) for m in ticked)
        self.tta_box.setEnabled(any(not is_diffusion(m) for m in ticked) or not ticked)
        for widget in (self.samples_spin, self.steps_spin, self.sampler_combo, self.seed_spin):
            widget.setEnabled(diffusion or not ticked)
        self.diffusion_note.setText("" if diffusion or not ticked else "No diffusion model is ticked.")
