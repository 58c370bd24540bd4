"""The napari dock widget: pick a model and its settings, predict on an image layer, add the results.

Everything but the layer plumbing is the app's: ``RunControls`` (model picker, samples/steps/
sampler/seed for diffusion, TTA for U-Nets, run/cancel, progress and ETA; choices and defaults from
``core.settings.TABLE``), ``CoreBackend.run`` (the engine, one loaded model cached) and
``EventWorker`` (the engine off the GUI thread; cancel closes the generator). Errors and the
result's notes go to napari's notifications as one sentence.
"""

from __future__ import annotations

import logging
from typing import Any

from napari.utils.notifications import show_error, show_info, show_warning
from PySide6.QtCore import Slot
from PySide6.QtWidgets import QComboBox, QFormLayout, QGroupBox, QPushButton, QVBoxLayout, QWidget

from labelfree_app.core.events import PredictionResult, Progress
from labelfree_app.errors import LabelFreeError
from labelfree_app.gui.backend import CoreBackend
from labelfree_app.gui.models.card import model_card_dialog
from labelfree_app.gui.napari_plugin.layers import METADATA_KEY, TRUST, Placement, image_from_layer, result_layers
from labelfree_app.gui.predict.run_controls import RunControls
from labelfree_app.gui.worker import CANCELLED, DONE, EventWorker
from labelfree_app.models.fit import InputFacts

_log = logging.getLogger(__name__)


class LabelFreeWidget(QWidget):
    """Dock widget: ``run()`` predicts the chosen image layer; ``worker`` is the running job (or None)."""

    def __init__(self, napari_viewer: Any, backend: Any = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.backend = backend if backend is not None else CoreBackend()
        self.worker: EventWorker | None = None
        self.status = ""  # how the last run ended: done | cancelled | failed
        self._placement: Placement | None = None

        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("The transmitted-light image layer to predict from")
        self.refresh_button = QPushButton("Refresh models")
        self.refresh_button.setToolTip("List the installed models again (after installing one with `labelfree`)")
        self.controls = RunControls()
        input_box = QGroupBox("Input")
        form = QFormLayout(input_box)
        form.addRow("Image layer", self.layer_combo)
        form.addRow("", self.refresh_button)
        layout = QVBoxLayout(self)
        layout.addWidget(input_box)
        layout.addWidget(self.controls)

        self.controls.runRequested.connect(self.run)
        self.controls.cancelRequested.connect(self.cancel)
        self.controls.cardRequested.connect(self._show_card)
        self.refresh_button.clicked.connect(self.refresh_models)
        self.layer_combo.currentIndexChanged.connect(self._on_layer_changed)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self._refresh_layers)
        self.viewer.layers.selection.events.active.connect(self._on_active_layer)
        self.refresh_models()
        self.controls.set_devices(self._devices())
        self._refresh_layers()

    # --- pickers --------------------------------------------------------------------------
    def refresh_models(self) -> None:
        try:
            models = self.backend.list_models()
        except LabelFreeError as exc:
            show_error(str(exc))
            models = []
        self.controls.set_models(models)

    def _devices(self) -> list[Any]:
        try:
            return list(self.backend.devices())
        except Exception:  # noqa: BLE001 - a device probe must not stop the widget; "auto" still works
            _log.exception("listing devices failed")
            return []

    def image_layers(self) -> list[Any]:
        from napari.layers import Image as ImageLayer

        # LabelFree's own outputs (their metadata names a model) are not offered as inputs
        return [layer for layer in self.viewer.layers
                if isinstance(layer, ImageLayer) and "model_id" not in layer.metadata.get(METADATA_KEY, {})]

    def _refresh_layers(self, *_: Any) -> None:
        current = self.layer_combo.currentText()
        active = self.viewer.layers.selection.active
        names = [layer.name for layer in self.image_layers()]
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        wanted = current if current in names else (active.name if active is not None and active.name in names else "")
        if wanted:
            self.layer_combo.setCurrentText(wanted)
        self.layer_combo.blockSignals(False)
        self._on_layer_changed()

    def _on_active_layer(self, event: Any = None) -> None:
        active = self.viewer.layers.selection.active
        if active is not None and self.layer_combo.findText(active.name) >= 0 and not self.is_running():
            self.layer_combo.setCurrentText(active.name)

    def _on_layer_changed(self, *_: Any) -> None:
        layer = self.selected_layer()
        facts = None
        if layer is not None and not getattr(layer, "rgb", False):
            shape = layer.data[0].shape if getattr(layer, "multiscale", False) else layer.data.shape
            facts = InputFacts(planes=int(shape[-3]) if len(shape) >= 3 else 1, channels=1)
        self.controls.set_image_facts(facts)

    def selected_layer(self) -> Any:
        name = self.layer_combo.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def _show_card(self, model_id: str) -> None:
        if model_id:
            model_card_dialog(self, self.backend.model_manifest(model_id))

    # --- running --------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.worker is not None and self.worker.is_running()

    @Slot()
    def run(self) -> bool:
        """Predict the chosen layer with the chosen model; False (with a notification) if it cannot start."""
        if self.is_running():
            return False
        layer, model_id = self.selected_layer(), self.controls.model_id()
        if layer is None:
            show_error("Add or choose an image layer to predict from.")
            return False
        if not model_id:
            show_error("No LabelFree model is installed; install one with `labelfree models install`.")
            return False
        try:
            image, self._placement = image_from_layer(layer, self.viewer.dims.point)
        except LabelFreeError as exc:
            show_error(str(exc))
            return False
        settings = self.controls.settings()
        if self._placement.time_point is not None:
            settings["time_point"] = self._placement.time_point
        backend = self.backend
        self.worker = EventWorker(lambda: backend.run(image, model_id, settings))
        self.worker.progress.connect(self._on_progress)
        self.worker.result.connect(self._on_result)
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_finished)
        self.status = ""
        self.controls.set_running(True)
        self.layer_combo.setEnabled(False)
        self.worker.start()
        return True

    @Slot()
    def cancel(self) -> None:
        if self.is_running():
            self.worker.cancel()
            self.controls.eta_label.setText("Cancelling…")

    def wait(self, ms: int = 30000) -> bool:
        return self.worker.wait(ms) if self.worker is not None else True

    @Slot(object)
    def _on_progress(self, event: Progress) -> None:
        self.controls.show_progress(event.stage, event.done, event.total, event.message)

    @Slot(object)
    def _on_result(self, result: PredictionResult) -> None:
        if self._placement is None:
            return
        layers = result_layers(result, self._placement)
        for data, kwargs, _ in layers:
            self._put_layer(data, kwargs)
        stale = self.viewer.layers[TRUST] if TRUST in self.viewer.layers else None
        if stale is not None and METADATA_KEY in stale.metadata and all(k["name"] != TRUST for _, k, _ in layers):
            self.viewer.layers.remove(stale)  # an earlier run's trust map describes another prediction
        if result.notes:
            show_info(" ".join(result.notes))
        if result.trust is not None:
            (show_info if result.trust.trustworthy else show_warning)(result.trust.sentence())

    def _put_layer(self, data: Any, kwargs: dict[str, Any]) -> None:
        """Replace the data of an earlier LabelFree layer of that name, else add a layer."""
        name = kwargs["name"]
        old = self.viewer.layers[name] if name in self.viewer.layers else None
        if old is not None and METADATA_KEY in old.metadata and old.ndim == data.ndim:
            old.data = data
            for key in ("scale", "translate", "metadata"):
                setattr(old, key, kwargs[key])
            old.reset_contrast_limits()
            if "contrast_limits" in kwargs:  # a fixed scale (the trust map's 0-1)
                old.contrast_limits = kwargs["contrast_limits"]
            return
        self.viewer.add_image(data, **kwargs)

    @Slot(str, bool)
    def _on_error(self, text: str, is_user_error: bool) -> None:
        show_error(text if is_user_error else f"The prediction failed unexpectedly ({text}).")

    @Slot(str)
    def _on_finished(self, status: str) -> None:
        self.status = status
        self.controls.set_running(False)
        self.controls.show_finished(status)
        self.layer_combo.setEnabled(True)
        if status == CANCELLED:
            show_info("The prediction was cancelled; no layers were added.")
        elif status != DONE:
            _log.info("prediction ended: %s", status)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        if self.is_running():
            self.worker.cancel()
            self.worker.wait(10000)
        super().closeEvent(event)
