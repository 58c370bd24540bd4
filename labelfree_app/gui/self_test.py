"""Help ▸ Self-test: run the bundled-model self-test off the GUI thread and show its report.

The work is ``labelfree_app.selftest.iter_self_test`` (Qt-free, the same as ``labelfree
--self-test``), consumed by a ``QRunnable`` on the global thread pool, so the window stays
responsive and ``MainWindow.shut_down`` (which waits for the pool) never leaves it running.
Closing the dialog asks it to stop after the model in progress.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterator

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QProgressBar, QVBoxLayout, QWidget

_log = logging.getLogger(__name__)

MakeEvents = Callable[[], Iterator[Any]]


def _default_events() -> Iterator[Any]:
    from labelfree_app.selftest import iter_self_test  # imports torch: on the worker thread only

    return iter_self_test()


class _Signals(QObject):
    step = Signal(object)  # SelfTestStep
    checked = Signal(object)  # ModelCheck
    done = Signal(object)  # SelfTestReport, or None when cancelled
    failed = Signal(str)


class SelfTestJob(QRunnable):
    """Consumes the self-test generator and emits what it yields; ``cancel()`` stops between models."""

    def __init__(self, make_events: MakeEvents) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the dialog owns it
        self.signals = _Signals()
        self._make_events = make_events
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def run(self) -> None:
        from labelfree_app.selftest import ModelCheck, SelfTestStep

        events = None
        try:
            events = self._make_events()
            while not self._cancel.is_set():
                try:
                    event = next(events)
                except StopIteration as stop:
                    self.signals.done.emit(stop.value)
                    return
                if isinstance(event, SelfTestStep):
                    self.signals.step.emit(event)
                elif isinstance(event, ModelCheck):
                    self.signals.checked.emit(event)
            self.signals.done.emit(None)
        except Exception as exc:  # reported in the dialog, logged in full
            _log.exception("self-test failed unexpectedly")
            self.signals.failed.emit(f"{type(exc).__name__}: {exc}")
        finally:
            if events is not None and hasattr(events, "close"):
                events.close()


class SelfTestDialog(QDialog):
    """Shows the self-test's progress, one line per model, and the verdict."""

    def __init__(self, parent: QWidget | None = None, make_events: MakeEvents | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("LabelFree self-test")
        self.resize(640, 360)
        self.status = QLabel("Starting the self-test (loading PyTorch)…")
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        for widget in (self.status, self.progress, self.log, buttons):
            layout.addWidget(widget)
        self.report: Any = None
        self.finished_running = False
        self.job = SelfTestJob(make_events or _default_events)
        self.job.signals.step.connect(self._on_step)
        self.job.signals.checked.connect(lambda check: self.log.appendPlainText(check.line()))
        self.job.signals.done.connect(self._on_done)
        self.job.signals.failed.connect(self._on_failed)

    def start(self) -> None:
        QThreadPool.globalInstance().start(self.job)

    def _on_step(self, step: Any) -> None:
        self.progress.setRange(0, step.total)
        self.progress.setValue(step.index)
        self.status.setText(step.message)

    def _on_done(self, report: Any) -> None:
        self.finished_running = True
        self.report = report
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        if report is None:
            self.status.setText("Self-test stopped.")
            return
        self.log.appendPlainText(report.footer())  # the per-model lines are already shown
        self.status.setText("Self-test passed." if report.ok else "Self-test FAILED: see the lines marked FAIL.")

    def _on_failed(self, message: str) -> None:
        self.finished_running = True
        self.progress.setRange(0, 1)
        self.status.setText("The self-test could not run.")
        self.log.appendPlainText(message)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt name)
        self.job.cancel()
        super().closeEvent(event)


def open_self_test_dialog(window: Any, make_events: MakeEvents | None = None) -> SelfTestDialog:
    """Open the dialog on ``window`` (kept alive in ``window.dialogs``) and start the run."""
    dialog = SelfTestDialog(window, make_events)
    getattr(window, "dialogs", []).append(dialog)
    dialog.show()
    dialog.start()
    return dialog
