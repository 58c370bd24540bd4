"""The live view of a training run: loss and validation r curves, the validation crop, time and ETA.

It only displays: the dialog feeds it the worker's signals. Curves are redrawn at most every
``REDRAW_INTERVAL_S``, however fast steps arrive.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from labelfree_app.gui.predict.run_controls import format_duration
from labelfree_app.gui.train.preview import ImageGrid

PROGRESS_UNITS = 1000
REDRAW_INTERVAL_S = 0.3  # painting the curves costs CPU the training needs
SMOOTHING = 0.9  # exponential moving average of the loss drawn over the raw steps


def remaining_seconds(step: int, max_steps: int, steps_per_s: float, run_seconds: float,
                      budget_s: float | None) -> tuple[float | None, str]:
    """Seconds left and what ends the run first: the step count or the time budget."""
    by_steps = (max_steps - step) / steps_per_s if steps_per_s > 0 else None
    by_budget = max(budget_s - run_seconds, 0.0) if budget_s is not None else None
    if by_budget is not None and (by_steps is None or by_budget < by_steps):
        return by_budget, "time budget"
    return by_steps, "steps"


def progress_of(step: int, max_steps: int, run_seconds: float, budget_s: float | None) -> tuple[int, str]:
    """The bar's value (of ``PROGRESS_UNITS``) and text: it counts whichever ends the run first, so a
    2-minute budget fills the bar in 2 minutes, not at 5 % of the preset's steps."""
    by_steps = step / max_steps if max_steps > 0 else 0.0
    by_time = run_seconds / budget_s if budget_s else 0.0
    if budget_s and by_time >= by_steps:
        text = f"{format_duration(min(run_seconds, budget_s))} of {format_duration(budget_s)} (step {step})"
        return min(int(by_time * PROGRESS_UNITS), PROGRESS_UNITS), text
    return min(int(by_steps * PROGRESS_UNITS), PROGRESS_UNITS), f"step {step} / {max_steps}"


def smoothed(values: Sequence[float], weight: float = SMOOTHING) -> np.ndarray:
    out = np.empty(len(values), dtype=np.float64)
    level = float(values[0]) if len(values) else 0.0
    for index, value in enumerate(values):
        level = weight * level + (1.0 - weight) * float(value)
        out[index] = level
    return out


class DecadeAxis(pg.AxisItem):
    """A log axis whose labelled level is the decades; the 2…9 ticks get labels only if there is room."""

    def logTickValues(self, minVal: float, maxVal: float, size: float, stdTicks: Any) -> list:  # noqa: N803
        low, high = int(np.floor(minVal)), int(np.ceil(maxVal))
        decades = [float(v) for v in range(low, high + 1) if minVal <= v <= maxVal]
        minor = [v + np.log10(m) for v in range(low, high) for m in range(2, 10)]
        minor = [float(x) for x in minor if minVal < x < maxVal]
        return ([(1.0, decades)] if decades else []) + [(None, minor)]


class LivePage(QWidget):
    """Emits ``pauseClicked`` (Pause or Resume) and ``stopClicked``."""

    pauseClicked = Signal()
    stopClicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.val_steps: list[int] = []
        self.val_rs: list[float] = []
        self.step = 0
        self.max_steps = 0
        self.seconds = 0.0
        self.budget_s: float | None = None
        self._run_clock_start = 0.0
        self._run_first_step = 0
        self._last_redraw = float("-inf")
        self._build()

    def _build(self) -> None:
        self.curves = pg.GraphicsLayoutWidget()
        self.loss_plot = self.curves.addPlot(row=0, col=0, title="Training loss",
                                             axisItems={"left": DecadeAxis("left")})
        self.loss_plot.setLogMode(y=True)
        self.loss_plot.showGrid(x=True, y=True, alpha=0.2)
        self.loss_plot.setDownsampling(auto=True, mode="mean")  # long runs: a bounded number of points drawn
        self.loss_plot.setClipToView(True)
        self.raw_loss = self.loss_plot.plot(pen=pg.mkPen((120, 120, 200, 90)))
        self.smooth_loss = self.loss_plot.plot(pen=pg.mkPen((60, 110, 255), width=2))
        self.r_plot = self.curves.addPlot(row=1, col=0, title="Validation Pearson r")
        self.r_plot.setLabel("bottom", "step")
        self.r_plot.showGrid(x=True, y=True, alpha=0.2)
        self.r_curve = self.r_plot.plot(pen=pg.mkPen((240, 140, 0), width=2), symbol="o", symbolSize=6,
                                        symbolBrush=(240, 140, 0))
        self.r_plot.setXLink(self.loss_plot)
        self.crops = ImageGrid(["Validation input", "Target", "Prediction"])
        self.crops.setMinimumHeight(220)

        self.status_label = QLabel("Starting…")
        self.status_label.setWordWrap(True)
        self.time_label = QLabel("")
        self.best_label = QLabel("")
        self.progress = QProgressBar()
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Save a checkpoint and pause; Resume continues from the same step")
        self.stop_button = QPushButton("Stop and save best")
        self.stop_button.setToolTip("Finish now: the model is written from the best validated step")
        self.pause_button.clicked.connect(self.pauseClicked)
        self.stop_button.clicked.connect(self.stopClicked)

        buttons = QHBoxLayout()
        buttons.addWidget(self.progress, 1)
        buttons.addWidget(self.pause_button)
        buttons.addWidget(self.stop_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.curves, 3)
        layout.addWidget(self.crops, 2)
        layout.addWidget(self.status_label)
        info = QHBoxLayout()
        info.addWidget(self.time_label, 1)
        info.addWidget(self.best_label)
        layout.addLayout(info)
        layout.addLayout(buttons)

    # --- run state ------------------------------------------------------------------------
    def begin(self, max_steps: int, budget_minutes: float | None, *, fresh: bool) -> None:
        """A run (or its resumed part) is about to start; ``budget_minutes`` is what is left."""
        if fresh:
            self.steps, self.losses, self.val_steps, self.val_rs = [], [], [], []
            self.step, self.seconds = 0, 0.0
            self.best_label.setText("")
            for col in range(3):
                self.crops.set_image(0, col, None)
        self.max_steps = max_steps
        self.budget_s = None if budget_minutes is None else 60.0 * budget_minutes
        self.progress.setRange(0, PROGRESS_UNITS)
        self.set_state("loading")
        self._redraw(force=True)

    def set_state(self, state: str) -> None:
        """"loading", "training", "pausing", "paused", "stopping", "finished" or "failed"."""
        running = state in ("loading", "training")
        self.pause_button.setText("Resume" if state == "paused" else "Pause")
        self.pause_button.setEnabled(state in ("training", "paused"))
        self.stop_button.setEnabled(running or state == "paused")
        messages = {"loading": "Reading and checking the pairs…", "pausing": "Pausing: saving a checkpoint…",
                    "paused": f"Paused at step {self.step}; a checkpoint is saved. Resume continues from it.",
                    "stopping": "Stopping: validating and writing the model from the best step…"}
        if state in messages:
            self.status_label.setText(messages[state])

    def on_loading(self, done: int, total: int) -> None:
        self.status_label.setText(f"Reading pair {min(done + 1, total)} of {total}…")

    def on_started(self, event: Any) -> None:
        self.step = event.start_step
        self._run_first_step = event.start_step
        self._run_clock_start = time.monotonic()
        resumed = f"resumed at step {event.start_step}, " if event.start_step else ""
        self.status_label.setText(f"Training on {event.device}: {resumed}{event.train_pairs} pair(s), "
                                  f"{event.val_images} validation image(s), {event.parameters:,} parameters.")
        self.set_state("training")
        self._redraw(force=True)

    def add_steps(self, events: Sequence[Any]) -> None:
        for event in events:
            self.steps.append(event.step)
            self.losses.append(max(float(event.loss), 1e-12))
        if events:
            self.step = events[-1].step
            self.seconds = events[-1].seconds
        self._redraw()

    def on_validation(self, event: Any) -> None:
        self.val_steps.append(event.step)
        self.val_rs.append(float(event.val_r) if math.isfinite(event.val_r) else float("nan"))
        preview = event.preview
        if preview is not None:
            planes = [p if p.ndim == 2 else p[p.shape[0] // 2] for p in (preview.input, preview.target,
                                                                          preview.prediction)]
            titles = ("Validation input", "Target", f"Prediction at step {event.step}")
            for col, (plane, title) in enumerate(zip(planes, titles)):
                self.crops.set_image(0, col, plane, title)
            self.crops.fit()
        if event.is_best:
            self.best_label.setText(f"best r = {event.val_r:.3f} at step {event.step}")
        self._redraw(force=True)

    def steps_per_second(self) -> float:
        elapsed = time.monotonic() - self._run_clock_start
        done = self.step - self._run_first_step
        return done / elapsed if elapsed > 0 and done > 0 else 0.0

    def _redraw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_redraw < REDRAW_INTERVAL_S:
            return
        self._last_redraw = now
        if self.losses:
            x = np.asarray(self.steps)
            self.raw_loss.setData(x, np.asarray(self.losses))
            self.smooth_loss.setData(x, smoothed(self.losses))
        else:
            self.raw_loss.setData([], [])
            self.smooth_loss.setData([], [])
        self.r_curve.setData(np.asarray(self.val_steps), np.asarray(self.val_rs))
        value, text = progress_of(self.step, self.max_steps, now - self._run_clock_start, self.budget_s)
        self.progress.setValue(value)
        self.progress.setFormat(text)
        rate = self.steps_per_second()
        left, why = remaining_seconds(self.step, self.max_steps, rate, now - self._run_clock_start, self.budget_s)
        eta = "estimating…" if left is None or rate == 0 else f"{format_duration(left)} ({why})"
        speed = f", {rate:.1f} steps/s" if rate else ""
        self.time_label.setText(f"Elapsed {format_duration(self.seconds)}{speed} · ETA {eta}")
