"""Under Diffusion sampling, what "model default" is and how long a run will take:
"8 × 25, ~3 min on this CPU" (core/step_time: one measured step time per model and device)."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QLabel
from shiboken6 import isValid

from labelfree_app.core.step_time import estimate_seconds, estimate_text
from labelfree_app.gui.worker import call_in_thread


class DiffusionEstimate:
    """Keeps ``controls.estimate_label`` true for the chosen model, samples, steps, device and image."""

    def __init__(self, backend: Any, controls: Any, file_list: Any) -> None:
        self.backend = backend
        self.controls = controls
        self.file_list = file_list  # its current file's image sets the pixel count
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.label.setToolTip("Samples × steps per sample, and the time this image takes on this device "
                              "(one step timed once per model and device)")
        controls.diffusion_form.addRow("Takes", self.label)
        self.step_seconds: dict[tuple[str, str], float] = {}
        self._measuring: set[tuple[str, str]] = set()
        controls.modelChanged.connect(lambda *_: self.refresh())
        controls.samples_spin.valueChanged.connect(lambda *_: self.refresh())
        controls.steps_spin.valueChanged.connect(lambda *_: self.refresh())
        controls.device_combo.currentIndexChanged.connect(lambda *_: self.refresh())

    def _counts(self, model: Any) -> tuple[int, int]:
        defaults = (getattr(model, "manifest", None) and getattr(model.manifest, "diffusion", None)) or None
        samples = self.controls.samples_spin.value() or int(getattr(defaults, "samples", 0) or 0)
        steps = self.controls.steps_spin.value() or int(getattr(defaults, "steps", 0) or 0)
        return samples, steps

    def _device_word(self) -> str:
        text = self.controls.device_combo.currentText()
        return "CPU" if "CPU" in text or self.controls.device() == "cpu" else "GPU"

    def refresh(self) -> str:
        """Update the label now (measuring in the background when this model and device are new)."""
        if not isValid(self.label):  # a measurement that ends after the window closed
            return ""
        model = self.controls.current_model()
        if model is None or getattr(model, "kind", "") != "diffusion":
            self.label.setText("")
            return ""
        samples, steps = self._counts(model)
        key = (str(model.id), self.controls.device())
        image = getattr(self.file_list.current(), "image", None)
        per_step = self.step_seconds.get(key)
        seconds = None
        if per_step is not None and per_step == per_step and image is not None:
            height, width = image.data.shape[-2:]
            seconds = estimate_seconds(per_step, int(height) * int(width), samples, steps)
        text = estimate_text(samples, steps, seconds, self._device_word()) if samples and steps else ""
        if per_step is None and hasattr(self.backend, "measure_step_seconds"):
            text += " (timing one step…)" if text else "timing one step…"
            self._measure(key)
        self.label.setText(text)
        return text

    def _measure(self, key: tuple[str, str]) -> None:
        if key in self._measuring:
            return
        self._measuring.add(key)

        def done(seconds: float) -> None:
            self._measuring.discard(key)
            self.step_seconds[key] = float(seconds)
            self.refresh()

        def failed(exc: BaseException) -> None:
            self._measuring.discard(key)
            if exc.__class__.__name__ != "BusyError":  # busy: timed at the next refresh instead
                self.step_seconds[key] = float("nan")
            if isValid(self.label):
                shown = self.label.text().replace(" (timing one step…)", "")
                self.label.setText(f"{shown} (no time estimate: {exc})")

        call_in_thread(lambda: self.backend.measure_step_seconds(*key), done, failed)
