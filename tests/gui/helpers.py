"""Helpers for GUI tests: simulated drops, waiting for loads and runs."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QAbstractScrollArea, QApplication, QWidget


def drop_files(target: QWidget, paths: Sequence[Path]) -> QDropEvent:
    """Send a drag-enter and a drop of ``paths`` (as file URLs) onto ``target``; returns the drop.

    Scroll areas (graphics views) get drops on their viewport, as from a real mouse.
    """
    if isinstance(target, QAbstractScrollArea):
        target = target.viewport()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    centre = target.rect().center()
    enter = QDragEnterEvent(QPoint(centre), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(target, enter)
    drop = QDropEvent(QPointF(centre), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(target, drop)
    return drop


def wait_loaded(qtbot, window, count: int = 1, timeout: int = 5000) -> None:
    qtbot.waitUntil(
        lambda: len(window.file_list.files) >= count
        and all(r.state != "loading" for r in window.file_list.files),
        timeout=timeout,
    )


def run_and_wait(qtbot, window, timeout: int = 10000) -> str:
    """Press Run and wait for the run to finish; returns the finished status."""
    with qtbot.waitSignal(window.runner.finished, timeout=timeout) as blocker:
        assert window.run_current()
    window.runner.wait(2000)
    return blocker.args[1]


def select_model(window, model_id: str) -> None:
    controls = window.controls
    model = next(m for m in window.models if m.id == model_id)
    controls.target_combo.setCurrentIndex(controls.target_combo.findData(str(model.target)))
    controls.model_combo.setCurrentIndex(controls.model_combo.findData(model_id))
    assert controls.model_id() == model_id
