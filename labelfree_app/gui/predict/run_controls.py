"""Run controls: model picker by target, device picker, diffusion settings, Run/Cancel, progress + ETA."""

from __future__ import annotations

import time
from typing import Any, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from labelfree_app.core.settings import TABLE, is_diffusion
from labelfree_app.errors import ModelNotFoundError
from labelfree_app.models.fit import InputFacts, best_fitting, fit_problem

SAMPLERS = TABLE["sampler"].choices
DEFAULT_FRAMES = TABLE["frames"].asked  # denoising frames kept for the replay (as `--save-steps`)
PREVIEW_INTERVAL_S = 0.08  # ask the engine for previews a bit faster than the 10 frames/s we show


def eta_seconds(elapsed: float, fraction: float) -> float | None:
    """Seconds left at a constant rate, or None before there is anything to extrapolate from."""
    if fraction <= 0.0 or elapsed <= 0.0:
        return None
    return max(elapsed * (1.0 - fraction) / fraction, 0.0)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class RunControls(QWidget):
    """Emits ``runRequested`` / ``cancelRequested`` / ``cardRequested(model_id)``."""

    runRequested = Signal()
    cancelRequested = Signal()
    cardRequested = Signal(str)
    modelChanged = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._models: list[Any] = []
        self._started_at = 0.0
        self._stage = ""
        self._stage_started_at = 0.0

        self.target_combo = QComboBox()
        self.target_combo.setToolTip("The structure to predict")
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("Installed models for this target")
        for combo in (self.target_combo, self.model_combo):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(16)
        self.card_button = QPushButton("Model card…")
        self.card_button.setToolTip("What this model is, how it was trained, how well it does")
        self.device_combo = QComboBox()
        self.device_combo.addItem("auto", "auto")
        self.device_combo.setToolTip("Where to compute: auto picks cuda, then mps, then cpu")
        self.device_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.device_combo.setMinimumContentsLength(16)

        self.samples_spin = self._spin(0, int(TABLE["samples"].high),
                                       "Number of diffusion samples averaged (variance needs 2 or more)")
        self.steps_spin = self._spin(0, int(TABLE["steps"].high), "Denoising steps per sample (fewer is faster)")
        self.sampler_combo = QComboBox()
        self.sampler_combo.addItem("model default", None)
        for name in SAMPLERS:
            self.sampler_combo.addItem(name, name)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("Same seed, same result")
        self.tta_box = QCheckBox("Test-time augmentation variance")
        self.tta_box.setToolTip("Predict flipped/rotated copies and show their variance")

        self.run_button = QPushButton("Run")
        self.run_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("")
        self.eta_label = QLabel("")
        self.eta_label.setWordWrap(True)

        model_box = QGroupBox("Model")
        model_form = QFormLayout(model_box)
        model_form.addRow("Target", self.target_combo)
        model_form.addRow("Model", self.model_combo)
        self.fit_label = QLabel("")
        self.fit_label.setWordWrap(True)
        model_form.addRow("", self.fit_label)
        model_form.addRow("", self.card_button)
        model_form.addRow("Device", self.device_combo)
        self.diffusion_box = QGroupBox("Diffusion sampling")
        diffusion_form = QFormLayout(self.diffusion_box)
        diffusion_form.addRow("Samples", self.samples_spin)
        diffusion_form.addRow("Steps", self.steps_spin)
        diffusion_form.addRow("Sampler", self.sampler_combo)
        diffusion_form.addRow("Seed", self.seed_spin)
        self.unet_box = QGroupBox("U-Net")
        QVBoxLayout(self.unet_box).addWidget(self.tta_box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addWidget(model_box)
        layout.addWidget(self.diffusion_box)
        layout.addWidget(self.unet_box)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.eta_label)
        layout.addStretch(1)

        self.target_combo.currentIndexChanged.connect(self._fill_models_for_target)
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        self.card_button.clicked.connect(lambda: self.cardRequested.emit(self.model_id() or ""))
        self.run_button.clicked.connect(self.runRequested)
        self.cancel_button.clicked.connect(self.cancelRequested)
        self._facts: InputFacts | None = None
        self.set_models([])

    @staticmethod
    def _spin(minimum: int, maximum: int, tip: str) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(minimum, maximum)
        spin.setSpecialValueText("model default")
        spin.setToolTip(tip)
        return spin

    # --- models and devices ---------------------------------------------------------------
    def set_models(self, models: Sequence[Any], select_id: str = "") -> None:
        """Fill the pickers; select ``select_id`` if present, else each target's default."""
        self._models = list(models)
        keep = select_id or self.model_id() or ""
        targets = sorted({str(m.target) for m in self._models})
        self.target_combo.blockSignals(True)
        self.target_combo.clear()
        for target in targets:
            self.target_combo.addItem(target, target)
        self.target_combo.blockSignals(False)
        chosen = next((m for m in self._models if m.id == keep), None)
        if chosen is None:
            chosen = next((m for m in self._models if getattr(m, "default", False)), None)
        if chosen is not None:
            self.target_combo.setCurrentIndex(targets.index(str(chosen.target)))
        self._fill_models_for_target(select_id=chosen.id if chosen else "")
        has_models = bool(self._models)
        self.model_combo.setEnabled(has_models)
        self.card_button.setEnabled(has_models)
        if not has_models:
            self.model_combo.addItem("no models installed — Models ▸ Manage models…", None)

    def _fill_models_for_target(self, *_: Any, select_id: str = "") -> None:
        target = self.target_combo.currentData()
        candidates = [m for m in self._models if str(m.target) == target]
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for model in candidates:
            label = f"{model.name} ({model.kind}, {model.dims}D)"
            if getattr(model, "default", False):
                label += " — default"
            if getattr(model, "demo", False):
                label += " — demo"
            problem = self._fit_problem(model)
            if problem:
                label += " — does not fit this image"
            self.model_combo.addItem(label, model.id)
            if problem:
                index = self.model_combo.count() - 1
                self.model_combo.setItemData(index, f"{model.id} {problem}.", Qt.ItemDataRole.ToolTipRole)
        wanted = select_id or next((m.id for m in candidates if getattr(m, "default", False)), "")
        index = self.model_combo.findData(wanted) if wanted else 0
        self.model_combo.setCurrentIndex(max(index, 0))
        self.model_combo.blockSignals(False)
        self._on_model_changed()

    def _fit_problem(self, model: Any) -> str | None:
        if self._facts is None or getattr(model, "manifest", None) is None:
            return None
        return fit_problem(model.manifest, self._facts)

    def set_image_facts(self, facts: InputFacts | None) -> None:
        """Mark which models fit the shown image; switch to the best fitting one if the chosen one does not."""
        self._facts = facts
        current = self.current_model()
        chosen = current.id if current is not None else ""
        if facts is not None and (current is None or self._fit_problem(current)):
            best = self._best_for(facts)
            chosen = best.id if best is not None else chosen
        if chosen:
            target = next(str(m.target) for m in self._models if m.id == chosen)
            self.target_combo.blockSignals(True)
            self.target_combo.setCurrentIndex(max(self.target_combo.findData(target), 0))
            self.target_combo.blockSignals(False)
        self._fill_models_for_target(select_id=chosen)

    def _best_for(self, facts: InputFacts) -> Any:
        """The best fitting model of the current target, else of any target (``models.fit``)."""
        known = [m for m in self._models if getattr(m, "manifest", None) is not None]
        preferred = [m.id for m in known if getattr(m, "default", False)]
        target = self.target_combo.currentData()
        for pool in ([m for m in known if str(m.target) == target], known):
            try:
                return best_fitting(pool, facts, preferred) if pool else None
            except ModelNotFoundError:
                continue
        return None

    def _show_fit(self, model: Any) -> None:
        if self._facts is None or model is None:
            self.fit_label.setText("")
            return
        problem = self._fit_problem(model)
        self.fit_label.setText(f"Does not fit this image: it {problem}." if problem
                               else f"Fits this image ({self._facts.describe()}).")

    def _on_model_changed(self, *_: Any) -> None:
        model = self.current_model()
        self._show_fit(model)
        diffusion = is_diffusion(model)
        self.diffusion_box.setVisible(model is None or diffusion)
        self.unet_box.setVisible(model is not None and not diffusion)
        offers_tta = bool(getattr(model, "tta", False))
        self.tta_box.setEnabled(offers_tta)
        self.tta_box.setToolTip(
            "Predict flipped/rotated copies and show their variance"
            if offers_tta
            else "This model does not offer test-time augmentation"
        )
        self.modelChanged.emit(model.id if model is not None else "")

    def model_id(self) -> str | None:
        return self.model_combo.currentData()

    def current_model(self) -> Any:
        model_id = self.model_id()
        return next((m for m in self._models if m.id == model_id), None)

    def set_devices(self, devices: Sequence[Any], preferred: str = "auto") -> None:
        """List 'auto' (and what it picks) plus every device found."""
        self.device_combo.clear()
        picked = devices[0] if devices else None
        auto_label = f"auto → {getattr(picked, 'label', picked.name)}" if picked is not None else "auto"
        self.device_combo.addItem(auto_label, "auto")
        for device in devices:
            self.device_combo.addItem(str(getattr(device, "label", device.name)), str(device.name))
        index = self.device_combo.findData(preferred)
        self.device_combo.setCurrentIndex(max(index, 0))

    def device(self) -> str:
        return str(self.device_combo.currentData() or "auto")

    # --- settings -------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Settings for the engine (``PredictSettings`` fields; None = the model's default)."""
        model = self.current_model()
        values: dict[str, Any] = {"device": self.device(), "seed": self.seed_spin.value()}
        if is_diffusion(model):
            values["samples"] = self.samples_spin.value() or None
            values["steps"] = self.steps_spin.value() or None
            values["sampler"] = self.sampler_combo.currentData()
            values["frames"] = DEFAULT_FRAMES
            values["preview_interval_s"] = PREVIEW_INTERVAL_S
        else:
            values["tta"] = self.tta_box.isChecked() and self.tta_box.isEnabled()
        return values

    def restore(self, diffusion: dict[str, Any], tta: bool) -> None:
        self.samples_spin.setValue(int(diffusion.get("samples") or 0))
        self.steps_spin.setValue(int(diffusion.get("steps") or 0))
        index = self.sampler_combo.findData(diffusion.get("sampler"))
        self.sampler_combo.setCurrentIndex(max(index, 0))
        self.seed_spin.setValue(int(diffusion.get("seed") or 0))
        self.tta_box.setChecked(bool(tta))

    def diffusion_values(self) -> dict[str, Any]:
        return {
            "samples": self.samples_spin.value() or None,
            "steps": self.steps_spin.value() or None,
            "sampler": self.sampler_combo.currentData(),
            "seed": self.seed_spin.value(),
        }

    # --- running state --------------------------------------------------------------------
    def set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        for widget in (self.target_combo, self.model_combo, self.device_combo, self.diffusion_box, self.unet_box):
            widget.setEnabled(not running)
        self.tta_box.setEnabled(not running and bool(getattr(self.current_model(), "tta", False)))
        if running:
            self._started_at = time.monotonic()
            self._stage = ""
            self.progress_bar.setValue(0)
            self.progress_bar.setFormat("starting…")
            self.eta_label.setText("Loading the model…")

    def show_progress(self, stage: str, done: int, total: int, message: str = "") -> None:
        """Update the bar and the ETA (extrapolated within the current stage)."""
        now = time.monotonic()
        if stage != self._stage:
            self._stage = stage
            self._stage_started_at = now
        fraction = done / total if total else 0.0
        self.progress_bar.setValue(int(round(1000 * fraction)))
        self.progress_bar.setFormat(f"{stage} {done}/{total}")
        left = eta_seconds(now - self._stage_started_at, fraction)
        text = message or stage
        if left is not None and done < total:
            text += f" — about {format_duration(left)} left"
        self.eta_label.setText(text)

    def show_finished(self, text: str) -> None:
        elapsed = time.monotonic() - self._started_at if self._started_at else 0.0
        self.progress_bar.setValue(1000 if text == "done" else self.progress_bar.value())
        self.progress_bar.setFormat(text)
        self.eta_label.setText(f"{text.capitalize()} after {format_duration(elapsed)}.")
