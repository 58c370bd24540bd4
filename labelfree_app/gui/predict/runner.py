"""Runs one prediction at a time and routes its events to the panels, controls and file list.

The runner owns the ``EventWorker`` (a ``GeneratorWorker`` on its own thread). Previews go to the
Denoising panel only while the running file is the one shown; the result is stored on the file record either way. On cancel or
failure the previous result of that file is left intact and shown again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QCoreApplication, QObject, Signal, Slot

from labelfree_app.core.events import Preview, PredictionResult, Progress
from labelfree_app.gui.backend import Backend, is_large_image
from labelfree_app.gui.files.file_list import DONE, FAILED, LOADED, PREDICTING, FileList, OpenFile
from labelfree_app.gui.predict.run_controls import RunControls
from labelfree_app.gui.predict.saved_result import SavedResultView
from labelfree_app.gui.streamed_run import SavedResult, discard
from labelfree_app.gui.trust_levels import interval_text, trust_of
from labelfree_app.gui.viewer.panel_grid import PanelGrid
from labelfree_app.gui.worker import CANCELLED, EventWorker


MAX_RECORDED_PREVIEWS = 40  # fallback replay when the engine returns no frames
MAX_RECORDED_BYTES = 256 * 1024 * 1024
UNIT_LABELS = {"stain": "stain units", "zscore": "z-score"}  # what the prediction's values mean


def frame_step_labels(count: int, steps: Any) -> list[str] | None:
    """"step k/T" for frames the engine kept at evenly spaced steps (as its sampler picks them)."""
    try:
        steps = int(steps)
    except (TypeError, ValueError):
        return None
    if count < 1 or count > steps:
        return None
    picked = sorted({int(round(v)) for v in np.linspace(0, steps - 1, count)})
    if len(picked) != count:
        return None
    return [f"step {index + 1}/{steps}" for index in picked]


class PredictionRunner(QObject):
    """``started(record)``, ``finished(record, status)``, ``message(text)``, ``failed(text, is_user)``,
    ``resultShown(record)`` after the panels show a file's result (or its lack of one)."""

    started = Signal(object)
    resultShown = Signal(object)
    finished = Signal(object, str)
    message = Signal(str)
    failed = Signal(str, bool)

    def __init__(
        self,
        backend: Backend,
        panels: PanelGrid,
        controls: RunControls,
        file_list: FileList,
        is_diffusion: Callable[[str], bool],
    ) -> None:
        super().__init__()
        self.backend = backend
        self.panels = panels
        self.controls = controls
        self.file_list = file_list
        self._is_diffusion = is_diffusion
        self.preview_kind = "x_t"
        self.worker: EventWorker | None = None
        self.record: OpenFile | None = None
        self._awaiting: OpenFile | None = None  # the record whose run has not given its result yet
        self.model_id = ""
        self._seen_kinds: set[str] = set()
        self._recorded: list[tuple[str, np.ndarray]] = []
        self.saved_view = SavedResultView(panels, backend)  # results of huge images, streamed to files
        self.saved_view.message.connect(self.message)
        self._saved: list[SavedResult] = []  # their files live in the cache until replaced or the app quits
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.discard_saved_results)

    def show_clean_estimate(self, on: bool) -> None:
        """Whether the Denoising panel shows the predicted clean image (pred_x0) or the noisy sample (x_t)."""
        self.preview_kind = "pred_x0" if on else "x_t"

    def is_running(self) -> bool:
        return self.worker is not None and self.worker.is_running()

    def start(self, record: OpenFile, model_id: str, settings: dict[str, Any]) -> bool:
        """Start predicting ``record`` with ``model_id``; False if a run is already going."""
        if self.is_running():
            return False
        self.record = self._awaiting = record
        self.model_id = model_id
        self._seen_kinds = set()
        self._recorded = []
        image = record.image
        if is_large_image(image, self.backend.large_plane_pixels):  # streamed to a file by the batch job
            inputs = [Path(p) for p in record.extra.get("plane_paths") or ()] or [record.path]
            events = lambda: self.backend.predict_to_file(image, model_id, dict(settings), inputs)  # noqa: E731
        else:
            events = lambda: self.backend.run(image, model_id, dict(settings))  # noqa: E731
        self.worker = EventWorker(events)
        self.worker.progress.connect(self._on_progress)
        self.worker.preview.connect(self._on_preview)
        self.worker.result.connect(self._on_result)
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_finished)
        self.file_list.set_state(record, PREDICTING)
        self.controls.set_running(True)
        if self._is_current(record):
            self._prepare_panels()
        self.started.emit(record)
        self.worker.start()
        return True

    def cancel(self) -> None:
        if self.worker is not None and self.is_running():
            self.worker.cancel()
            self.message.emit("Cancelling…")

    def wait(self, ms: int = 5000) -> bool:
        return self.worker.wait(ms) if self.worker is not None else True

    def _is_current(self, record: OpenFile | None) -> bool:
        return record is not None and self.file_list.current() is record

    def _prepare_panels(self) -> None:
        """A run starts on the shown file: its earlier result and variance leave the panels (they come
        back if the run is cancelled or fails)."""
        diffusion = self._is_diffusion(self.model_id)
        self.panels.clear_results()
        self.panels.prediction_panel.clear("predicting…")
        self.panels.denoising_panel.clear("waiting for the first step…" if diffusion else "U-Net model: one pass")

    # --- events ---------------------------------------------------------------------------
    @Slot(object)
    def _on_progress(self, event: Progress) -> None:
        self.controls.show_progress(event.stage, event.done, event.total, event.message)

    @Slot(object)
    def _on_preview(self, event: Preview) -> None:
        self._seen_kinds.add(event.kind)
        if event.kind != self.preview_kind and self.preview_kind in self._seen_kinds:
            return
        label = f"sample {event.sample + 1}, step {event.step + 1}/{event.total_steps}"
        recorded_bytes = sum(image.nbytes for _, image in self._recorded)
        if (
            event.sample == 0
            and len(self._recorded) < MAX_RECORDED_PREVIEWS
            and recorded_bytes + event.image.nbytes <= MAX_RECORDED_BYTES
        ):
            self._recorded.append((label, event.image))
        if self._is_current(self.record):
            self.panels.show_live_preview(event.image, label)

    @Slot(object)
    def _on_result(self, result: PredictionResult) -> None:
        if self.record is None:
            return
        previous, self.record.result = self.record.result, result
        self._awaiting = None
        if isinstance(result, SavedResult):
            self._saved.append(result)
        if previous is not result and previous in self._saved:  # a huge result's files go with it
            self._saved.remove(previous)
            discard(previous)
        self.record.extra["frame_labels"] = None
        self.record.extra.pop("saved_overviews", None)  # a new run may have rewritten the same file
        if getattr(result, "frames", None) is None and self._recorded:
            self.record.extra["recorded_frames"] = np.stack([image for _, image in self._recorded])
            self.record.extra["frame_labels"] = [label for label, _ in self._recorded]
        else:
            self.record.extra.pop("recorded_frames", None)
        if self._is_current(self.record):
            self.show_result(self.record)
        if result.notes:
            self.message.emit(" ".join(result.notes))

    def show_result(self, record: OpenFile) -> None:
        """Fill the result panels from ``record.result`` (or clear them when it has none); a record
        whose run goes on shows that run, not the result it had before."""
        if record is self._awaiting:
            self._prepare_panels()
            return
        self._fill_panels(record)
        self.resultShown.emit(record)

    def _fill_panels(self, record: OpenFile) -> None:
        result = record.result
        self.saved_view.stop()
        if result is None:
            self.panels.clear_results()
            return
        if isinstance(result, SavedResult):
            units = UNIT_LABELS.get(result.settings.get("units"), "z-score")
            self.saved_view.show(record, f"Prediction ({units})")
            return
        diffusion = self._is_diffusion(result.model_id) or result.frames is not None
        settings = result.settings or {}
        if diffusion:
            samples = settings.get("samples")
            title = f"Variance over {samples} samples" if samples else "Variance over samples"
        else:
            title = "Variance (test-time augmentation)"
        if result.frames is not None:
            frames, labels = result.frames, frame_step_labels(len(result.frames), settings.get("steps"))
        else:
            frames, labels = record.extra.get("recorded_frames"), record.extra.get("frame_labels")
        self.panels.set_result(
            result.prediction,
            result.variance,
            frames,
            is_diffusion=diffusion,
            variance_title=title,
            frame_labels=labels,
            prediction_title=f"Prediction ({UNIT_LABELS.get(settings.get('units'), 'z-score')})",
        )

    @Slot(str, bool)
    def _on_error(self, text: str, is_user_error: bool) -> None:
        if self.record is not None:
            self.record.extra["last_error"] = text
        self.failed.emit(text, is_user_error)

    @Slot(str)
    def _on_finished(self, status: str) -> None:
        record = self.record
        self._awaiting = None
        self.controls.set_running(False)
        self.controls.show_finished(status)
        if record is not None:
            if status == DONE:
                self.file_list.set_state(record, DONE)
                self._say_done(record)
            elif status == CANCELLED:
                self.file_list.set_state(record, DONE if record.result is not None else LOADED)
                self.message.emit(f"Prediction of {record.path.name} cancelled; the previous result is kept.")
            else:
                self.file_list.set_state(record, FAILED, record.extra.get("last_error", "prediction failed"))
            if status != DONE and self._is_current(record):
                self.show_result(record)
        self.finished.emit(record, status)

    def discard_saved_results(self) -> None:
        """Remove the cache files of every huge result this runner made (export keeps a copy)."""
        for result in self._saved:
            discard(result)
        self._saved.clear()

    def _say_done(self, record: OpenFile) -> None:
        result = record.result
        if result is None:
            return
        count = int(getattr(record.image, "n_timepoints", 1))
        again = "Batch export" if isinstance(result, SavedResult) else "Predict all time points"
        where = f" (time point 1 of {count}; {again} predicts every one)" if count > 1 else ""
        text = f"{record.name}{where}: predicted in {result.seconds:.1f} s on {result.device}."
        trust = trust_of(result)
        if trust is not None:
            text += f" {trust.level.capitalize()}: {interval_text(trust)}."
        if isinstance(result, SavedResult):
            text += (f" {result.prediction.name} stays in the cache until the window closes; "
                     "File ▸ Export result saves it.")
        self.message.emit(text)
