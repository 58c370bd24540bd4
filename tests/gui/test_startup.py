"""Launching the app: the window shows before torch is imported, entry points, crash reporting.

How many seconds the launch takes depends on the machine's load: benchmarks/gui_responsiveness.py
measures it."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_window_is_visible_before_torch_is_imported(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "LABELFREE_HOME": str(tmp_path)}
    completed = subprocess.run(
        [sys.executable, "-m", "labelfree_app", "--startup-time"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    match = re.search(r"window visible after ([0-9.]+) s .*torch imported before show=(\w+)", completed.stdout)
    assert match, completed.stdout
    assert match.group(2) == "False"
    assert "Traceback" not in completed.stderr


def test_the_installed_gui_command_runs_the_package_main(capsys):
    """pyproject's ``labelfree-gui`` resolves to a main that parses the app's own arguments."""
    import tomllib

    import labelfree_app
    import labelfree_app.__main__ as entry

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["gui-scripts"]
    module, _, name = scripts["labelfree-gui"].partition(":")
    assert (module, name) == ("labelfree_app.__main__", "main")
    with pytest.raises(SystemExit) as exited:
        entry.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"LabelFree {labelfree_app.__version__}"


def test_the_icon_of_the_app_has_several_sizes(qtbot):
    from labelfree_app.gui.app import app_icon

    sizes = {(s.width(), s.height()) for s in app_icon().availableSizes()}
    assert {(16, 16), (256, 256)} <= sizes


def test_many_qt_calls_do_not_lose_references_to_none_or_true(qtbot):
    """PySide6 6.12.0 on 3.11 drops a reference per call; either none is lost or the work-around holds."""
    from PySide6.QtCore import QObject, Signal

    from labelfree_app.gui import qt_compat

    class Emitter(QObject):
        ping = Signal(int)

    emitter = Emitter()
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(20_000):
        emitter.ping.emit(1)
        emitter.setObjectName("x")
    lost = max(none_before - sys.getrefcount(None), true_before - sys.getrefcount(True))
    if qt_compat.SINGLETON_WORKAROUND_APPLIED:
        assert sys.getrefcount(None) > 1 << 39 and sys.getrefcount(True) > 1 << 39
    else:
        assert lost < 1000, f"{lost} references lost without the work-around"


def test_the_work_around_is_applied_only_when_references_leak(monkeypatch):
    from labelfree_app.gui import qt_compat

    added: list[object] = []
    monkeypatch.setattr(qt_compat, "_add_references", lambda obj, count: added.append(obj))
    monkeypatch.setattr(qt_compat, "singleton_references_leak", lambda: False)
    assert qt_compat.make_singletons_immortal_if_needed() is False and added == []
    monkeypatch.setattr(qt_compat, "singleton_references_leak", lambda: True)
    monkeypatch.setattr(qt_compat.sys, "version_info", (3, 11, 7))
    assert qt_compat.make_singletons_immortal_if_needed() is True
    assert added == [None, True, False]


def test_adding_references_raises_the_reference_count():
    from labelfree_app.gui.qt_compat import _add_references

    probe = object()
    before = sys.getrefcount(probe)
    _add_references(probe, 5)
    try:
        assert sys.getrefcount(probe) == before + 5
    finally:
        _add_references(probe, -5)
    assert sys.getrefcount(probe) == before


def test_an_unexpected_exception_is_logged_and_shown_with_the_log_path(qtbot, backend, monkeypatch):
    from labelfree_app.gui.app import install_excepthook, setup_logging
    from labelfree_app.gui.main_window import MainWindow
    from labelfree_app.gui.settings import GuiSettings

    log_file = setup_logging()
    window = MainWindow(backend, GuiSettings(), log_file=log_file)
    qtbot.addWidget(window)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after the test
    install_excepthook(lambda: window, log_file)
    try:
        raise KeyError("surprise")
    except KeyError:
        sys.excepthook(*sys.exc_info())
    box = window.dialogs[-1]
    assert str(log_file) in box.text() and "KeyError" in box.text()
    for handler in logging.getLogger("labelfree_app").handlers:
        handler.flush()
    logged = log_file.read_text()
    assert "Traceback" in logged and "surprise" in logged
    assert str(log_file).startswith(os.environ["LABELFREE_HOME"])


def test_a_labelfree_error_reaching_the_hook_is_shown_as_its_sentence(qtbot, backend, monkeypatch):
    from labelfree_app.errors import DeviceError
    from labelfree_app.gui.app import install_excepthook
    from labelfree_app.gui.main_window import MainWindow
    from labelfree_app.gui.settings import GuiSettings

    window = MainWindow(backend, GuiSettings())
    qtbot.addWidget(window)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    install_excepthook(lambda: window, Path("unused.log"))
    sentence = "This machine has no CUDA GPU; choose 'auto' or 'cpu' as the device."
    sys.excepthook(DeviceError, DeviceError(sentence), None)
    assert window.statusBar().currentMessage() == sentence


def test_screenshot_mode_predicts_shows_a_mid_denoising_step_and_saves_the_window(qtbot, window, tiff_2d, tmp_path):
    from PIL import Image as PILImage

    from labelfree_app.gui.screenshot import ScreenshotRun

    codes: list[int] = []
    out = tmp_path / "shot" / "main_window.png"
    window.open_paths([tiff_2d])
    shot = ScreenshotRun(window, out, settings={"samples": 2, "steps": 4}, done=codes.append)
    shot.start()
    qtbot.waitUntil(lambda: bool(codes), timeout=10000)
    assert codes == [0] and shot.status == "saved"
    assert window.controls.steps_spin.value() == 4
    assert window.panels.player.index == 0  # 3 frames: the middle-ish one, not the last
    with PILImage.open(out) as image:
        assert image.size == (window.width(), window.height())
    assert "Input" in window.hover_label.text()  # the crosshair values are in the picture
