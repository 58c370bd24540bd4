"""Help ▸ Self-test: run the bundled-model self-test off the GUI thread and show its report.

The work is ``labelfree_app.selftest.iter_self_test`` (Qt-free, the same as ``labelfree
--self-test``), run by a ``GeneratorWorker`` on its own thread, so the window stays responsive.
Closing the dialog asks it to stop after the model in progress (the generator is closed between
events).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QProgressBar, QVBoxLayout, QWidget

from labelfree_app.gui.generator_worker import DONE, GeneratorWorker

MakeEvents = Callable[[], Iterator[Any]]


def _default_events() -> Iterator[Any]:
    from labelfree_app.selftest import iter_self_test  # imports torch: on the worker thread only

    return iter_self_test()


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
        self.worker = GeneratorWorker(make_events or _default_events, thread_name="labelfree-self-test")
        self.worker.what = "self-test"
        self.worker.yielded.connect(self._on_event)
        self.worker.returned.connect(self._on_done)
        self.worker.errored.connect(self._on_failed)
        self.worker.finished.connect(self._on_finished)

    def start(self) -> None:
        self.worker.start()

    def is_running(self) -> bool:
        return self.worker.is_running()

    def wait(self, ms: int = 10000) -> bool:
        return self.worker.wait(ms)

    def _on_event(self, event: Any) -> None:
        from labelfree_app.selftest import ModelCheck, SelfTestStep

        if isinstance(event, SelfTestStep):
            self._on_step(event)
        elif isinstance(event, ModelCheck):
            self.log.appendPlainText(event.line())

    def _on_finished(self, status: str) -> None:
        if status != DONE and not self.finished_running:  # cancelled: no report
            self._on_done(None)

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

    def _on_failed(self, message: str, _is_user_error: bool = False) -> None:
        self.finished_running = True
        self.progress.setRange(0, 1)
        self.status.setText("The self-test could not run.")
        self.log.appendPlainText(message)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt name)
        self.worker.cancel()
        super().closeEvent(event)


def open_self_test_dialog(
    parent: QWidget, dialogs: list[QWidget], make_events: MakeEvents | None = None
) -> SelfTestDialog:
    """Open the dialog on ``parent`` (kept alive in ``dialogs``) and start the run."""
    dialog = SelfTestDialog(parent, make_events)
    dialogs.append(dialog)
    dialog.show()
    dialog.start()
    return dialog
