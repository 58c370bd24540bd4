"""Issue 28 item 13: "model default" says what it is and how long the run takes (real backend, a tiny
diffusion model installed, the demo image)."""

from __future__ import annotations

import json

import pytest

from labelfree_app.core import step_time
from labelfree_app.gui.files.file_list import LOADED
from labelfree_app.gui.settings import GuiSettings
from labelfree_app.paths import demo_image
from tests.gui.helpers import select_model

pytest.importorskip("torch")


def test_estimate_text_reads_samples_by_steps_and_a_rounded_time():
    assert step_time.estimate_text(8, 25, 170.0, "CPU") == "8 × 25, ~3 min on this CPU"
    assert step_time.estimate_text(2, 5, 12.4, "GPU") == "2 × 5, ~12 s on this GPU"
    assert step_time.estimate_seconds(2.0, 1_000_000, 8, 25) == 400.0


def test_the_step_time_is_measured_once_per_model_and_device_and_cached(tmp_path):
    calls: list[int] = []
    seconds = step_time.measure_step_seconds(lambda image, steps: calls.append(steps), channels=2)
    assert calls == [1, 1, 3] and seconds > 0
    step_time.store_step_seconds("m@1|cpu", 0.5, tmp_path / "t.json")
    assert step_time.cached_step_seconds("m@1|cpu", tmp_path / "t.json") == 0.5
    assert step_time.cached_step_seconds("m@1|cuda:0", tmp_path / "t.json") is None


def test_the_window_shows_model_default_as_samples_by_steps_and_a_measured_time(qtbot, tmp_path):
    from labelfree_app.gui.backend import CoreBackend
    from labelfree_app.gui.main_window import MainWindow
    from tests.factories import make_diffusion_package

    backend = CoreBackend()
    package = make_diffusion_package(tmp_path / "pkgs", model_id="tiny-diffusion", steps=5, samples=3)
    backend.install_model(package.path)
    window = MainWindow(backend, GuiSettings())
    qtbot.addWidget(window)
    window.show()
    window.open_inputs([demo_image()])
    qtbot.waitUntil(lambda: bool(window.models) and window.file_list.files[0].state == LOADED, timeout=30000)
    select_model(window, "tiny-diffusion")
    label = window.estimate.label
    assert label.text().startswith("3 × 5")  # the model's defaults, before any time is known
    qtbot.waitUntil(lambda: "on this CPU" in label.text() or "no time" in label.text(), timeout=60000)
    assert "on this CPU" in label.text(), label.text()
    assert label.text().startswith("3 × 5, ~")
    cached = json.loads(step_time.cache_file().read_text())
    assert list(cached) == ["tiny-diffusion@0.1.0|auto"]
    per_step = cached["tiny-diffusion@0.1.0|auto"]
    window.controls.samples_spin.setValue(6)  # twice the samples: twice the time, no new measurement
    height, width = window.file_list.current().image.data.shape[-2:]
    expected = step_time.describe_duration(step_time.estimate_seconds(per_step, height * width, 6, 5))
    assert label.text() == f"6 × 5, {expected} on this CPU"
