"""Time in the window: the T slider moves every panel; *Predict all time points*; export of the series.

For an image with time points that the window shows whole (not a huge plane's overview), the
``TimeBar`` under the panels picks the time point: the Input panel shows that frame of the input,
and the result panels show the frame's prediction (and variance) where one is predicted, else a
note. Frames are read when shown, from the input (kept lazy: ``CoreBackend.read_image``) and from
the files *Predict all time points* wrote, and only the last ``KEPT_FRAMES`` are kept, so a long
series never sits in memory; while the series plays, the next ``READ_AHEAD`` frames are read on the
thread pool (``frame_cache.FrameCache``). *Predict all time points* runs ``series_run.predict_series``
(the batch job, one time point at a time, into the cache) on a ``GeneratorWorker``; each frame is
shown as it lands, progress and ETA go to the Run panel, and Cancel keeps the frames done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QCoreApplication, QObject, Signal, Slot
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QPushButton, QWidget

from labelfree_app.core.events import Progress
from labelfree_app.errors import LabelFreeError
from labelfree_app.gui.backend import frame_volume
from labelfree_app.gui.files.file_list import OpenFile
from labelfree_app.gui.generator_worker import DONE, GeneratorWorker
from labelfree_app.gui.predict.frame_cache import FrameCache, Read
from labelfree_app.gui.predict.run_controls import RunControls
from labelfree_app.gui.predict.series_export import export_series
from labelfree_app.gui.predict.series_run import FrameDone, SeriesResult, discard_series, new_series
from labelfree_app.gui.viewer.panel_grid import PanelGrid, first_channel
from labelfree_app.gui.viewer.time_bar import TimeBar
from labelfree_app.gui.worker import call_in_thread

KEPT_FRAMES = 8  # frames (input, prediction, variance) kept for going back and forth
READ_AHEAD = 3  # frames read ahead while playing (fewer than half of KEPT_FRAMES)
SERIES = "series"  # OpenFile.extra keys
TIME = "time_point"


def time_points(record: OpenFile | None) -> int:
    image = getattr(record, "image", None)
    return int(getattr(image, "n_timepoints", 1)) if image is not None else 0


class TimeLapse(QObject):
    """The T slider, *Predict all time points* and the series export for the shown file.

    It follows ``runner`` (the Run button's ``PredictionRunner``: what it shows, whether it runs) and
    the ``channel`` combo; sentences go to ``messages`` (show_message / report_error);
    ``is_large(image)``: shown as an overview (no T slider); ``export_folder()``: where to export (asks)."""

    frameShown = Signal(int)  # every panel shows this time point
    finished = Signal(str)  # a Predict all time points run ended: done | cancelled | failed
    exported = Signal(list)

    def __init__(self, panels: PanelGrid, backend: Any, controls: RunControls, runner: Any, channel: QComboBox,
                 messages: Any, is_large: Callable[[Any], bool], export_folder: Callable[[], Path | None]) -> None:
        super().__init__()
        self.panels, self.backend, self.controls, self.messages = panels, backend, controls, messages
        self.is_large, self.is_busy, self.export_folder = is_large, runner.is_running, export_folder
        runner.file_list.currentFileChanged.connect(self.show)  # a file without time points hides the bar
        runner.resultShown.connect(self.show)
        controls.cancelRequested.connect(self.cancel)
        channel.currentIndexChanged.connect(lambda _: self.refresh())
        self.bar = TimeBar()
        panels.add_row(self.bar)
        self.predict_button = QPushButton("Predict all time points")
        self.predict_button.setToolTip("Predict every time point in the background; each appears as it is done")
        self.export_button = QPushButton("Export time series…")
        self.export_button.setToolTip("Write the prediction as one TCZYX OME-TIFF and a movie")
        self.box = QWidget()
        row = QHBoxLayout(self.box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.predict_button)
        row.addWidget(self.export_button)
        layout = controls.layout()
        layout.insertWidget(layout.indexOf(controls.eta_label) + 1, self.box)
        self.predict_button.clicked.connect(self.predict_all)
        self.export_button.clicked.connect(lambda: self.export_current())
        self.bar.timeChanged.connect(self.show_time)
        self.bar.ready = self._ready
        self.record: OpenFile | None = None  # the shown file, when it has time points to move through
        self.worker: GeneratorWorker | None = None
        self.running: OpenFile | None = None
        self._running_series: SeriesResult | None = None
        self._cache = FrameCache(lambda: 3 * KEPT_FRAMES, owner=panels)
        self._series: list[SeriesResult] = []  # their frames live in the cache until the app quits
        self._newest: int | None = None  # the slider follows the newest frame while it sits on it
        self._overlay_later = False  # the overlay was on before a frame without a prediction
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.discard_all)
        self.show(None)

    # --- showing --------------------------------------------------------------------------
    def show(self, record: OpenFile | None) -> None:
        """``record`` is shown (its input and Run result are in the panels): the bar and its frame follow."""
        count = time_points(record)
        wanted = record if count > 1 and not self.is_large(record.image) else None
        if wanted is not self.record:
            self._cache.clear()
        self.record = wanted
        self.bar.set_count(count if wanted is not None else 1, record.extra.get(TIME, 0) if wanted else 0)
        self._update_buttons()
        if wanted is not None:
            self.show_time(self.bar.time)

    def refresh(self) -> None:
        """Show the current time point again (another channel, a new result)."""
        if self.record is not None:
            self.show_time(self.bar.time)

    def show_time(self, t: int) -> None:
        """Every panel shows time point ``t`` of the shown file (a frame not predicted: a note)."""
        record = self.record
        if record is None or record.image is None:
            return
        t = int(t)
        record.extra[TIME] = t
        count, panels = time_points(record), self.panels
        volume = self._cache.get(*self._input_read(record, t))
        self._put(panels.input_panel, volume)
        panels.input_panel.set_title(f"Input — {record.name} (time point {t + 1} of {count})")
        prediction, variance = self._result_at(record, t)
        overlay = panels.overlay_active
        if prediction is None:
            panels.set_overlay(False)
            panels.prediction_panel.clear(f"time point {t + 1} not predicted yet — press Predict all time points")
            panels.variance_panel.clear("")
            self._overlay_later = overlay or self._overlay_later
        else:
            self._put(panels.prediction_panel, prediction)
            if variance is not None:
                self._put(panels.variance_panel, variance)
            elif t != 0 or record.result is None:
                panels.variance_panel.clear("no variance for this run")
            panels.prediction_panel.set_title(f"{panels.prediction_title} — t {t + 1}")
            panels.set_overlay(overlay or self._overlay_later)
            if panels.overlay_active:
                panels.set_overlay(False)  # drawn again over this frame's input
                panels.set_overlay(True)
            self._overlay_later = False
        self.frameShown.emit(t)

    def _put(self, panel: Any, volume: np.ndarray) -> None:
        """A new frame in ``panel``, keeping its contrast and view (fresh ones where it was empty)."""
        panel.volume = np.asarray(volume, dtype=np.float32)
        panel.show_plane(self.panels.z, self.panels.max_projection)

    def _input_read(self, record: OpenFile, t: int) -> Read:
        image, channel = record.image, record.channel
        return ("input", channel, t), lambda: frame_volume(image, channel, t)

    def _result_reads(self, record: OpenFile, t: int) -> list[Read]:
        """The reads of time point ``t``'s prediction (and variance) that *Predict all time points* wrote."""
        series: SeriesResult | None = record.extra.get(SERIES)
        frame = series.frames.get(t) if series is not None else None
        if frame is None:
            return []
        reads: list[Read] = [(("prediction", id(series), t), lambda: self._read(frame.prediction))]
        if frame.variance:
            reads.append((("variance", id(series), t), lambda: self._read(frame.variance)))
        return reads

    def _ready(self, t: int) -> bool:
        """Whether time point ``t`` can be shown without waiting on the disk (asked while playing); its
        frames and those of the next ``READ_AHEAD`` time points are read on the thread pool meanwhile."""
        record = self.record
        if record is None or record.image is None:
            return True
        count = time_points(record)
        reads = [self._input_read(record, t), *self._result_reads(record, t)]
        ahead = [read for k in range(1, min(READ_AHEAD, KEPT_FRAMES // 2 - 1) + 1)
                 for read in (self._input_read(record, (t + k) % count), *self._result_reads(record, (t + k) % count))]
        return self._cache.ready(reads, ahead)

    def _result_at(self, record: OpenFile, t: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        reads = self._result_reads(record, t)
        if reads:
            prediction = self._cache.get(*reads[0])
            return prediction, self._cache.get(*reads[1]) if len(reads) > 1 else None
        result = record.result
        if t == 0 and result is not None and isinstance(getattr(result, "prediction", None), np.ndarray):
            variance = result.variance
            return first_channel(result.prediction), first_channel(variance) if variance is not None else None
        return None, None

    def _read(self, path: Path | None) -> np.ndarray:
        return np.asarray(self.backend.read_image(Path(str(path))).data[0], dtype=np.float32)  # (Z, Y, X)

    # --- predicting every time point ------------------------------------------------------
    def is_running(self) -> bool:
        return self.worker is not None and self.worker.is_running()

    def _update_buttons(self) -> None:
        record = self.record
        series = record.extra.get(SERIES) if record is not None else None
        self.box.setVisible(record is not None)
        self.predict_button.setEnabled(record is not None and not self.is_running() and
                                       hasattr(self.backend, "predict_series"))
        self.export_button.setEnabled(series is not None and series.complete() and not self.is_running())

    def predict_all(self, settings: dict[str, Any] | None = None) -> bool:
        """Predict every time point of the shown file not yet predicted with the chosen model and
        settings; False (with a sentence) when that cannot start."""
        record, model_id = self.record, self.controls.model_id()
        problem = self.controls.run_problem() if model_id else "No model is installed; add one in Models ▸ Manage models."
        if record is None:
            problem = "Open an image with time points first."
        elif self.is_running() or self.is_busy():
            problem = "A prediction is already running; wait for it or press Cancel."
        if problem:
            self.messages.show_message(problem)
            return False
        settings = dict(settings if settings is not None else self.controls.settings())
        settings["channel"] = record.channel
        series: SeriesResult | None = record.extra.get(SERIES)
        if series is None or not series.matches(model_id, settings):
            if series is not None:
                discard_series(series)
            series = new_series(record.path, model_id, time_points(record), settings)
            self._series.append(series)
            record.extra[SERIES] = series
            self._cache.clear()
        if series.complete():
            self.messages.show_message(f"Every time point of {record.name} is predicted with {model_id}.")
            return False
        inputs = [Path(p) for p in record.extra.get("plane_paths") or ()] or [record.path]
        image = record.image
        self.worker = GeneratorWorker(lambda: self.backend.predict_series(image, series, inputs),
                                      thread_name="labelfree-time-series")
        # Bound slots of this GUI-thread object: the worker's signals arrive queued, on the GUI thread.
        self.worker.yielded.connect(self._on_event)
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_finished)
        self.running, self._running_series = record, series
        self._newest = None
        self.controls.set_running(True)
        self._update_buttons()
        self.messages.show_message(f"Predicting {len(series.missing())} time points of {record.name} with {model_id}…")
        self.worker.start()
        return True

    def cancel(self) -> None:
        if self.is_running():
            self.worker.cancel()
            self.messages.show_message("Cancelling… the time points already predicted stay.")

    def wait(self, ms: int = 10000) -> bool:
        return self.worker.wait(ms) if self.worker is not None else True

    @Slot(object)
    def _on_event(self, event: Any) -> None:
        record = self.running
        if isinstance(event, Progress):
            self.controls.show_progress(event.stage, event.done, event.total, event.message)
        elif isinstance(event, FrameDone) and record is self.record:
            follow = not self.bar.is_playing() and self._newest in (None, self.bar.time)
            self._newest = event.t
            if follow and self.bar.time != event.t:
                self.bar.set_time(event.t)  # shows it
            elif self.bar.time == event.t:
                self.show_time(event.t)

    @Slot(str, bool)
    def _on_error(self, text: str, is_user_error: bool) -> None:
        self.messages.report_error(text, is_user_error)

    @Slot(str)
    def _on_finished(self, status: str) -> None:
        record, series = self.running, self._running_series
        self.running = None
        self.controls.set_running(False)
        self.controls.show_finished(status)
        self._update_buttons()
        done = len(series.frames)
        if status == DONE:
            self.messages.show_message(f"{record.name}: all {series.count} time points predicted with {series.model_id}; "
                              "Export time series… writes them as one file and a movie.")
        else:
            self.messages.show_message(f"Predicting the time points of {record.name} {status}; "
                              f"{done} of {series.count} are predicted and stay.")
        self.finished.emit(status)

    # --- export ---------------------------------------------------------------------------
    def export_current(self, folder: Path | None = None) -> bool:
        """Export the shown file's predicted series (TCZYX OME-TIFF + movie) in the background."""
        record = self.record
        series: SeriesResult | None = record.extra.get(SERIES) if record is not None else None
        if series is None or not series.complete():
            have = len(series.frames) if series is not None else 0
            self.messages.show_message(f"{have} of {time_points(record)} time points are predicted; press Predict all "
                              "time points first.")
            return False
        folder = folder if folder is not None else self.export_folder()
        if folder is None:
            return False
        inputs = [Path(p) for p in record.extra.get("plane_paths") or ()] or [record.path]
        image, channel, panels = record.image, record.channel, self.panels
        z, max_projection, fps = panels.z, panels.max_projection, self.bar.fps_spin.value()
        manifest = self.backend.model_manifest(series.model_id)
        self.messages.show_message(f"Exporting the {series.count} time points of {record.name} to {folder}…")

        def work() -> list[Path]:
            return export_series(Path(folder), inputs, series, manifest, lambda t: frame_volume(image, channel, t),
                                 z=z, max_projection=max_projection, fps=fps,
                                 pixel_size_um=getattr(image, "pixel_size_um", None))

        def done(written: list[Path]) -> None:
            self.messages.show_message(f"Exported {len(written)} files to {folder}.")
            self.exported.emit(written)

        def failed(exc: BaseException) -> None:
            user_error = isinstance(exc, LabelFreeError)
            self.messages.report_error(str(exc) if user_error else f"Export failed ({exc}).", user_error)

        call_in_thread(work, done, failed, owner=self.panels)
        return True

    def discard_all(self) -> None:
        """Remove every series' frames from the cache (export keeps its own copy)."""
        for series in self._series:
            discard_series(series)
        self._series.clear()
