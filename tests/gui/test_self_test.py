"""Help ▸ Self-test: the dialog runs the self-test off the GUI thread and shows the verdict."""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import pytest

from labelfree_app.gui import self_test
from labelfree_app.gui.self_test import SelfTestDialog
from labelfree_app.selftest import ModelCheck, SelfTestReport, SelfTestStep

pytestmark = pytest.mark.gui


def _events(checks: list[ModelCheck], delay_s: float = 0.0, seen: list[str] | None = None) -> Iterator[Any]:
    for index, check in enumerate(checks):
        if seen is not None:
            seen.append(threading.current_thread().name)
        yield SelfTestStep(index, len(checks), f"Checking {check.model_id}…")
        time.sleep(delay_s)
        yield check
    return SelfTestReport(checks=tuple(checks), seconds=1.0)


def test_passing_self_test_shows_each_model_and_the_verdict(qtbot) -> None:
    seen: list[str] = []
    dialog = SelfTestDialog(None, lambda: _events([ModelCheck("m1", "unet", 0.5), ModelCheck("m2", "diffusion", 1.5)],
                                                 seen=seen))
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.start()
    qtbot.waitUntil(lambda: dialog.finished_running, timeout=5000)
    text = dialog.log.toPlainText()
    assert "PASS m1 (unet) 0.5 s" in text and "PASS m2 (diffusion) 1.5 s" in text
    assert "Self-test passed: 2/2" in text
    assert dialog.status.text() == "Self-test passed."
    assert threading.main_thread().name not in seen  # the work ran on a pool thread


def test_failing_self_test_says_failed_and_why(qtbot) -> None:
    bad = ModelCheck("m1", "unet", 0.5, problems=("mean is 3, expected 0 ± 0.03",))
    dialog = SelfTestDialog(None, lambda: _events([bad]))
    qtbot.addWidget(dialog)
    dialog.start()
    qtbot.waitUntil(lambda: dialog.finished_running, timeout=5000)
    assert "FAIL m1" in dialog.log.toPlainText() and "mean is 3" in dialog.log.toPlainText()
    assert dialog.status.text().startswith("Self-test FAILED")
    assert dialog.report is not None and not dialog.report.ok


def test_an_unexpected_error_is_shown_not_raised(qtbot) -> None:
    def broken() -> Iterator[Any]:
        raise RuntimeError("no torch")
        yield  # pragma: no cover

    dialog = SelfTestDialog(None, broken)
    qtbot.addWidget(dialog)
    dialog.start()
    qtbot.waitUntil(lambda: dialog.finished_running, timeout=5000)
    assert "RuntimeError: no torch" in dialog.log.toPlainText()


def test_the_gui_thread_runs_while_the_self_test_waits_on_it(qtbot) -> None:
    """The model check blocks until the GUI thread answers: on the GUI thread itself it would hang."""
    from PySide6.QtCore import QTimer

    answered = threading.Event()

    def events() -> Iterator[Any]:
        yield SelfTestStep(0, 1, "Checking slow…")
        assert answered.wait(5.0), "the GUI thread never ran while the self-test was busy"
        yield ModelCheck("slow", "unet", 0.6)
        return SelfTestReport(checks=(ModelCheck("slow", "unet", 0.6),), seconds=1.0)

    dialog = SelfTestDialog(None, events)
    qtbot.addWidget(dialog)
    dialog.start()
    QTimer.singleShot(20, answered.set)  # runs only if the GUI event loop is free
    qtbot.waitUntil(lambda: dialog.finished_running, timeout=10000)
    assert dialog.status.text() == "Self-test passed."


def test_closing_the_dialog_stops_after_the_current_model(qtbot) -> None:
    checks = [ModelCheck(f"m{i}", "unet", 0.1) for i in range(5)]
    dialog = SelfTestDialog(None, lambda: _events(checks, delay_s=0.2))
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.start()
    qtbot.waitUntil(lambda: "m0" in dialog.status.text(), timeout=5000)
    dialog.close()
    qtbot.waitUntil(lambda: dialog.finished_running, timeout=5000)
    assert dialog.report is None and dialog.status.text() == "Self-test stopped."


def test_help_menu_self_test_opens_the_dialog(qtbot, window, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(self_test, "_default_events", lambda: _events([ModelCheck("demo", "unet", 0.1)]))
    help_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Help")
    texts = [a.text() for a in help_menu.actions()]
    assert "&Self-test…" in texts and texts.index("&Self-test…") < texts.index("&About LabelFree")
    window.menus.self_test_action.trigger()
    dialog = next(d for d in window.dialogs if isinstance(d, SelfTestDialog))
    qtbot.waitUntil(lambda: dialog.finished_running, timeout=5000)
    assert dialog.status.text() == "Self-test passed."
