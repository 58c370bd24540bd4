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
from labelfree_app.gui.models.labels import MiddleElidedCombo, model_label
from labelfree_app.gui.predict.scale_controls import ScaleControls
from labelfree_app.models.fit import InputFacts, default_for_image, fit_problem

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


TTA_TIP = ("Predict 8 flipped and rotated copies and average them: slower, better on a microscope the model "
           "never saw, and it shows their variance")

class RunControls(QWidget):
    """Emits ``runRequested`` / ``cancelRequested`` / ``cardRequested(model_id)``."""

    runRequested = Signal()
    cancelRequested = Signal()
    cardRequested = Signal(str)
    modelChanged = Signal(str)
    modelPicked = Signal(str)  # the user chose this model (or target) for the shown image

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._models: list[Any] = []
        self._started_at = 0.0
        self._stage = ""
        self._stage_started_at = 0.0

        self.target_combo = QComboBox()
        self.target_combo.setToolTip("The structure to predict")
        self.model_combo = MiddleElidedCombo()
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
        self.tta_box = QCheckBox("Test-time augmentation (8× the time)")
        self.tta_box.setToolTip(TTA_TIP)

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
        diffusion_form = self.diffusion_form = QFormLayout(self.diffusion_box)
        diffusion_form.addRow("Samples", self.samples_spin)
        diffusion_form.addRow("Steps", self.steps_spin)
        diffusion_form.addRow("Sampler", self.sampler_combo)
        diffusion_form.addRow("Seed", self.seed_spin)
        self.unet_box = QGroupBox("U-Net")
        QVBoxLayout(self.unet_box).addWidget(self.tta_box)
        self.scale_box = ScaleControls()
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addWidget(model_box)
        layout.addWidget(self.diffusion_box)
        layout.addWidget(self.unet_box)
        layout.addWidget(self.scale_box)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.eta_label)
        layout.addStretch(1)

        # Programmatic choices block these signals, so they fire for the user's choices only.
        self.target_combo.currentIndexChanged.connect(self._on_target_picked)
        self.model_combo.currentIndexChanged.connect(self._on_model_picked)
        self.card_button.clicked.connect(lambda: self.cardRequested.emit(self.model_id() or ""))
        self.run_button.clicked.connect(self.runRequested)
        self.cancel_button.clicked.connect(self.cancelRequested)
        self._facts: InputFacts | None = None
        self._picked = ""  # the model the user chose for the shown image ("": the rule chooses)
        self._running = False
        self._loading = True  # until the first set_models
        self.model_combo.addItem("loading the model list…", None)
        self.model_combo.setEnabled(False)
        self.card_button.setEnabled(False)
        self._update_run_button()

    @staticmethod
    def _spin(minimum: int, maximum: int, tip: str) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(minimum, maximum)
        spin.setSpecialValueText("model default")
        spin.setToolTip(tip)
        return spin

    # --- models and devices ---------------------------------------------------------------
    def set_models(self, models: Sequence[Any], select_id: str = "") -> None:
        """Fill the pickers and choose a model (``_choice``); ``select_id`` is shown while no image is."""
        self._loading = False
        self._models = list(models)
        keep = select_id or self.model_id() or ""
        targets = sorted({str(m.target) for m in self._models})
        self.target_combo.blockSignals(True)
        self.target_combo.clear()
        for target in targets:
            self.target_combo.addItem(target, target)
        self.target_combo.blockSignals(False)
        self._select(self._choice(fallback=keep))
        has_models = bool(self._models)
        self.model_combo.setEnabled(has_models)
        self.card_button.setEnabled(has_models)
        if not has_models:
            self.model_combo.addItem("no models installed — Models ▸ Manage models…", None)
        self._update_run_button()

    def set_image_facts(self, facts: InputFacts | None, picked: str = "") -> None:
        """A new image is shown: mark which models fit it and choose one (``_choice``).

        ``picked`` is the model the user chose for this image earlier; a pick made while no image was
        shown carries over to the first image shown after it.
        """
        carried = self._picked if self._facts is None else ""
        self._facts = facts
        self._picked = picked or carried
        self._select(self._choice())

    def choose(self, model_id: str) -> None:
        """Select ``model_id`` as the user's pick for the shown image (e.g. a model just installed)."""
        self._picked = model_id
        self._select(self._find(model_id))
        self.modelPicked.emit(model_id)

    def _find(self, model_id: str) -> Any:
        return next((m for m in self._models if m.id == model_id), None) if model_id else None

    def _choice(self, fallback: str = "") -> Any:
        """The user's pick for the shown image when it fits; else the one rule for an image
        (``models.fit.default_for_image``); else ``fallback``, the current model or a default."""
        picked = self._find(self._picked)
        if picked is not None and (self._facts is None or not self._fit_problem(picked)):
            return picked
        if self._facts is not None:
            best = default_for_image(self._models, self._facts)
            if best is not None:
                return best
        return (self._find(fallback) or self.current_model()
                or next((m for m in self._models if getattr(m, "default", False)), None)
                or (self._models[0] if self._models else None))

    def _select(self, model: Any) -> None:
        """Show ``model`` (its target, then it) without counting it as the user's pick."""
        if model is not None:
            self.target_combo.blockSignals(True)
            self.target_combo.setCurrentIndex(max(self.target_combo.findData(str(model.target)), 0))
            self.target_combo.blockSignals(False)
        self._fill_models_for_target(select_id=model.id if model is not None else "")

    def _on_target_picked(self, *_: Any) -> None:
        self._fill_models_for_target()
        self._remember_pick()

    def _on_model_picked(self, *_: Any) -> None:
        self._on_model_changed()
        self._remember_pick()

    def _remember_pick(self) -> None:
        """The user chose a target or a model: it stays for this image (``modelPicked``)."""
        self._picked = self.model_id() or ""
        self.modelPicked.emit(self._picked)

    def _fill_models_for_target(self, *_: Any, select_id: str = "") -> None:
        target = self.target_combo.currentData()
        candidates = [m for m in self._models if str(m.target) == target]
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for model in candidates:
            label = model_label(model)
            if getattr(model, "default", False):
                label += " — default"
            if getattr(model, "demo", False):
                label += " — demo"
            problem = self._fit_problem(model)
            if problem:
                label += " — does not fit this image"
            self.model_combo.addItem(label, model.id)
            self.model_combo.setItemData(self.model_combo.count() - 1, label, Qt.ItemDataRole.ToolTipRole)
            if problem:
                index = self.model_combo.count() - 1
                self.model_combo.setItemData(index, f"{model.id} {problem}.", Qt.ItemDataRole.ToolTipRole)
        best = default_for_image(candidates, self._facts) if self._facts is not None else None
        wanted = select_id or (best.id if best is not None else "") or next(
            (m.id for m in candidates if getattr(m, "default", False)), "")
        index = self.model_combo.findData(wanted) if wanted else 0
        self.model_combo.setCurrentIndex(max(index, 0))
        self.model_combo.blockSignals(False)
        self._on_model_changed()

    def models(self) -> list[Any]:
        """The installed models the pickers list."""
        return list(self._models)

    def fit_problem(self, model: Any) -> str | None:
        """Why ``model`` does not fit the shown image ('needs a z-stack…'), or None when it fits."""
        return self._fit_problem(model)

    def _fit_problem(self, model: Any) -> str | None:
        if self._facts is None or getattr(model, "manifest", None) is None:
            return None
        return fit_problem(model.manifest, self._facts)

    def run_problem(self) -> str | None:
        """Why Run cannot start with the chosen model on the shown image (one sentence), or None."""
        model = self.current_model()
        problem = self._fit_problem(model) if model is not None else None
        if problem is None:
            return None
        return (f"{model.name} does not fit this image: it {problem}. Choose a model that fits "
                "(those that do not are marked in the list).")

    def _update_run_button(self) -> None:
        problem = self.run_problem()
        self.run_button.setEnabled(not self._running and not self._loading and problem is None)
        self.run_button.setToolTip("Waiting for the list of installed models" if self._loading
                                   else problem or "Predict the shown image with the chosen model (Ctrl+R)")

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
        self.tta_box.setToolTip(TTA_TIP if offers_tta else "This model does not offer test-time augmentation")
        self._update_run_button()
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
        return values | self.scale_box.values()

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
        self._running = running
        self._update_run_button()
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

    def show_file_state(self, seconds: float | None) -> None:
        """Nothing runs: show the shown file's own last run (its seconds), or nothing for a file never run."""
        self.progress_bar.setValue(1000 if seconds is not None else 0)
        self.progress_bar.setFormat("done" if seconds is not None else "")
        self.eta_label.setText(f"Predicted in {format_duration(seconds)}." if seconds is not None else "")

    def show_finished(self, text: str) -> None:
        elapsed = time.monotonic() - self._started_at if self._started_at else 0.0
        self.progress_bar.setValue(1000 if text == "done" else self.progress_bar.value())
        self.progress_bar.setFormat(text)
        self.eta_label.setText(f"{text.capitalize()} after {format_duration(elapsed)}.")
