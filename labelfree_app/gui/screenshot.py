"""``labelfree-gui FILE --screenshot OUT.png``: open, predict, save a picture of the window, quit.

Used to make the screenshots in ``docs/`` from a real run (under Xvfb on a headless machine).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from labelfree_app.gui.files.file_list import FAILED, LOADED

_log = logging.getLogger(__name__)
POLL_MS = 50


class ScreenshotRun:
    """Drives the window step by step on a timer, so the event loop keeps running throughout."""

    def __init__(
        self,
        window: Any,
        out: Path,
        *,
        model_id: str = "",
        settings: dict[str, Any] | None = None,
        timeout_s: float = 600.0,
        done: Callable[[int], None] | None = None,
        before_save: Callable[[Any], None] | None = None,
    ) -> None:
        self.window = window
        self.out = out
        self.model_id = model_id
        self.settings = settings or {}
        self.done = done or (lambda code: QApplication.instance().exit(code))
        self.before_save = before_save  # e.g. turn a view on; called with the window
        self.status = "waiting"
        self._elapsed_ms = 0
        self._limit_ms = int(timeout_s * 1000)
        self._timer = QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._step)
        window.runner.finished.connect(self._on_finished)

    def start(self) -> None:
        self._timer.start()

    def _fail(self, why: str) -> None:
        self._timer.stop()
        _log.error("screenshot run failed: %s", why)
        self.status = f"failed: {why}"
        self.done(1)

    def _step(self) -> None:
        self._elapsed_ms += POLL_MS
        if self._elapsed_ms > self._limit_ms:
            self._fail("timed out")
            return
        if self.status != "waiting":
            return
        window = self.window
        record = window.file_list.current()
        if record is None or record.state == FAILED:
            self._fail(record.reason if record is not None else "no file was opened")
            return
        if record.state != LOADED or window.controls.model_id() is None or not window.models:
            return
        if self.model_id:
            model = next((m for m in window.models if m.id == self.model_id), None)
            if model is None:
                self._fail(f"no model '{self.model_id}' is installed")
                return
            controls = window.controls
            controls.target_combo.setCurrentIndex(controls.target_combo.findData(str(model.target)))
            controls.model_combo.setCurrentIndex(controls.model_combo.findData(model.id))
        controls = window.controls
        if "samples" in self.settings:
            controls.samples_spin.setValue(int(self.settings["samples"]))
        if "steps" in self.settings:
            controls.steps_spin.setValue(int(self.settings["steps"]))
        self.status = "running"
        if not window.run_current():
            self._fail(window.statusBar().currentMessage())

    def _on_finished(self, record: Any, status: str) -> None:
        if self.status != "running":
            return
        if status != "done":
            self._fail(f"the prediction ended with '{status}'")
            return
        self.status = "saving"
        if self.before_save is not None:
            self.before_save(self.window)
        # Let the panels repaint and the histogram settle before grabbing.
        QTimer.singleShot(500, self._save)

    def _save(self) -> None:
        self._timer.stop()
        window = self.window
        player = window.panels.player
        if player.count > 2:  # a step half-way through denoising says more than the final one
            player.show_frame(player.count // 2 - 1)
        window.panels.probe(*_centre(window))
        self.out.parent.mkdir(parents=True, exist_ok=True)
        ok = window.grab().save(str(self.out), "PNG")
        self.status = "saved" if ok else "failed: could not write the PNG"
        self.done(0 if ok else 1)


def _centre(window: Any) -> tuple[float, float]:
    plane = window.panels.input_panel.plane
    return (plane.shape[1] / 2, plane.shape[0] / 2) if plane is not None else (0.0, 0.0)
