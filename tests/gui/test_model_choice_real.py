"""The window with the real backend and the bundled models: the model that fits the image is chosen
by the one rule (``models.fit``) whenever the image or the model list changes, from the first second.

Opened at launch (before the model list has loaded), the demo must get the model the CLI would pick,
and Run must never be enabled while a model that does not fit the image is selected.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtGui import QAction

from labelfree_app.gui.files.file_list import LOADED
from labelfree_app.gui.settings import GuiSettings
from labelfree_app.models.fit import InputFacts, fit_problem
from labelfree_app.models.registry import ModelRegistry
from labelfree_app.paths import demo_image
from tests.gui.helpers import select_model, wait_loaded

pytest.importorskip("torch")

LIST_TIMEOUT_MS = 60000  # listing the bundled models reads every manifest; slow on a loaded 2-core machine


@pytest.fixture
def demo() -> Path:
    path = demo_image()
    if not path.is_file():
        pytest.skip(f"the demo image is not at {path}")
    return path


@pytest.fixture
def isl_planes(shared_data) -> list[Path]:
    folder = shared_data / "isl_condition_b"
    planes = list(folder.glob("z_depth-*_PHASE_CONTRAST.png"))
    if len(planes) != 13:
        pytest.skip(f"the 13 ISL phase-contrast planes are not in {folder}")
    return planes


class RunWatch:
    """Samples the window every 20 ms: each time Run is enabled on a shown image, which model it would use."""

    def __init__(self, window) -> None:
        self.window = window
        self.bad: list[str] = []
        self.samples = 0
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(self.sample)
        self.timer.start()

    def sample(self) -> None:
        window = self.window
        record = window.file_list.current()
        model = window.controls.current_model()
        if record is None or record.image is None or model is None:
            return
        self.samples += 1
        problem = fit_problem(model.manifest, InputFacts.of(record.image))
        if problem and window.controls.run_button.isEnabled():
            self.bad.append(f"Run enabled with {model.id}, which {problem}")


def _real_window(qtbot, settings: GuiSettings):
    from labelfree_app.gui.backend import CoreBackend
    from labelfree_app.gui.main_window import MainWindow

    window = MainWindow(CoreBackend(), settings)
    qtbot.addWidget(window)
    window.show()
    return window


def _cli_choice(image) -> str:
    """What `labelfree predict` picks for the image (the registry's rule, no target asked)."""
    return ModelRegistry().default_for(facts=InputFacts.of(image)).id


@pytest.mark.parametrize("last_model", ["", "isl-dapi-unet", "isl-map2-unet"])
def test_the_demo_opened_at_launch_gets_the_fitting_model_and_run_never_offers_another(qtbot, demo, last_model):
    settings = GuiSettings()
    settings.set("last_model_id", last_model)  # the model the previous session ended on
    window = _real_window(qtbot, settings)
    watch = RunWatch(window)
    window.open_inputs([demo], ask=False)  # as `python -m labelfree_app FILE` does, before the list loads
    assert not window.models  # the race the launch has: the image may come before the model list
    qtbot.waitUntil(lambda: bool(window.models) and window.file_list.files[0].state == LOADED,
                    timeout=LIST_TIMEOUT_MS)
    record = window.file_list.current()
    expected = _cli_choice(record.image)
    assert expected == "lf-nuclei-2d"  # the README's promise for a single plane
    qtbot.waitUntil(lambda: window.controls.model_id() == expected, timeout=1000)
    assert window.controls.run_button.isEnabled()
    assert window.controls.fit_label.text() == "Fits this image (a single plane)."
    qtbot.wait(300)  # later events (devices listed, the panels drawn) must not change it
    watch.timer.stop()
    assert window.controls.model_id() == expected
    assert watch.samples > 0 and not watch.bad, watch.bad[:3]


def test_run_is_refused_for_a_model_that_does_not_fit_even_by_shortcut(qtbot, demo):
    window = _real_window(qtbot, GuiSettings())
    window.open_inputs([demo])
    qtbot.waitUntil(lambda: bool(window.models) and window.file_list.current().state == LOADED,
                    timeout=LIST_TIMEOUT_MS)
    select_model(window, "isl-map2-unet")  # the user picks a 13-plane model for a single plane
    assert "does not fit this image" in window.controls.model_combo.currentText()
    assert not window.controls.run_button.isEnabled()
    assert not window.run_current()  # Ctrl+R and the --screenshot run come here
    assert "does not fit this image" in window.statusBar().currentMessage()
    assert window.file_list.current().state == LOADED  # the valid file is not marked failed


def _trigger(window, text: str) -> None:
    next(a for a in window.findChildren(QAction) if a.text().replace("&", "") == text).trigger()


def test_the_isl_stack_opened_after_the_demo_gets_the_isl_model_and_a_users_pick_stays_with_its_image(
        qtbot, demo, isl_planes, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    window = _real_window(qtbot, GuiSettings())
    window.open_inputs([demo])
    qtbot.waitUntil(lambda: bool(window.models) and window.file_list.current().state == LOADED,
                    timeout=LIST_TIMEOUT_MS)
    assert window.controls.model_id() == "lf-nuclei-2d"
    watch = RunWatch(window)
    shuffled = [str(p) for p in isl_planes]
    random.Random(1).shuffle(shuffled)
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: (shuffled, "Images"))
    _trigger(window, "Open planes as z-stack…")
    wait_loaded(qtbot, window, count=2, timeout=60000)
    stack = window.file_list.current()
    assert stack.image.data.shape[:2] == (1, 13)
    expected = _cli_choice(stack.image)
    assert expected == "isl-dapi-unet"  # the README's promise for the 13-plane stack
    assert window.controls.model_id() == expected
    assert window.controls.fit_label.text() == "Fits this image (a 13-plane z-stack)."

    select_model(window, "isl-map2-unet")  # the user's pick for the stack
    demo_record = window.file_list.files[0]
    window.file_list.select(demo_record)
    assert window.controls.model_id() == "lf-nuclei-2d"  # the demo: the rule again (MAP2 does not fit it)
    window.file_list.select(stack)
    assert window.controls.model_id() == "isl-map2-unet"  # the stack: the user's pick stays
    window.refresh_models()  # the model list changes (e.g. after Manage models): the pick still stands
    qtbot.wait(3000)
    assert window.controls.model_id() == "isl-map2-unet"
    watch.timer.stop()
    assert not watch.bad, watch.bad[:3]


def test_a_screenshot_run_without_model_predicts_the_demo_with_the_fitting_model(qtbot, demo, tmp_path):
    """`labelfree-gui FILE --screenshot OUT` without --model: what `gui.app.main` does, in this process."""
    from labelfree_app.gui.screenshot import ScreenshotRun

    window = _real_window(qtbot, GuiSettings())
    codes: list[int] = []
    shot = ScreenshotRun(window, tmp_path / "shot.png", done=codes.append, timeout_s=120)
    window.open_inputs([demo], ask=False)
    shot.start()
    qtbot.waitUntil(lambda: bool(codes), timeout=150000)
    assert codes == [0], shot.status
    result = window.file_list.current().result
    assert result.model_id == "lf-nuclei-2d"
    assert (tmp_path / "shot.png").stat().st_size > 0
