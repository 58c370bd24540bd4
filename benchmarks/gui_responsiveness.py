"""Print how responsive the window is: launch time and event-loop pauses during a run.

These figures depend on the machine and its load, so they are measured here instead of asserted
in tests/gui. Targets on a quiet machine: window visible < 3 s; largest pause of a 10 ms timer
on the GUI thread <= 100 ms during a run; live previews >= 10 frames/s.

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_responsiveness.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def launch_seconds() -> str:
    """Seconds from launch to a visible window, as the app itself reports it."""
    with tempfile.TemporaryDirectory() as home:
        done = subprocess.run([sys.executable, "-m", "labelfree_app", "--startup-time"], cwd=ROOT, text=True,
                              capture_output=True, env={**os.environ, "LABELFREE_HOME": home}, timeout=120)
    match = re.search(r"window visible after ([0-9.]+) s", done.stdout)
    return match.group(1) if match else f"? ({done.stderr[-200:]})"


def run_pauses(steps: int = 150, step_seconds: float = 0.005, preview_interval_s: float = 0.1) -> None:
    """Largest event-loop gap and preview frame rate during a (fake-engine) diffusion run."""
    import numpy as np
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    import labelfree_app.gui  # noqa: F401 (binding work-arounds)
    from labelfree_app.gui.main_window import MainWindow
    from labelfree_app.gui.settings import GuiSettings
    from tests.gui.fakes import FakeBackend, write_tiff

    app = QApplication.instance() or QApplication([])
    backend = FakeBackend()
    backend.steps, backend.samples = steps, 1
    backend.step_seconds, backend.preview_interval_s = step_seconds, preview_interval_s
    window = MainWindow(backend, GuiSettings())
    window.show()
    with tempfile.TemporaryDirectory() as folder:
        path = write_tiff(Path(folder) / "a.tif", np.random.default_rng(0).random((1, 1, 256, 256), np.float32),
                          ["bright-field"])
        window.open_paths([path])
        deadline = time.monotonic() + 10
        while window.file_list.current() is None or window.file_list.current().image is None:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            if time.monotonic() > deadline:
                raise SystemExit("the image did not load")
        shown: list[float] = []
        original = window.panels.show_live_preview
        window.panels.show_live_preview = lambda image, label: (shown.append(time.monotonic()),
                                                                original(image, label))
        clock, gaps, last = QElapsedTimer(), [], [0]

        def tick() -> None:
            now = clock.elapsed()
            gaps.append(now - last[0])
            last[0] = now

        timer = QTimer()
        timer.timeout.connect(tick)
        clock.start()
        timer.start(10)
        loop = QEventLoop()
        window.runner.finished.connect(lambda *_: loop.quit())
        started = time.monotonic()
        window.run_current()
        loop.exec()
        timer.stop()
        elapsed = time.monotonic() - started
    fps = (len(shown) - 1) / (shown[-1] - shown[0]) if len(shown) > 1 else float("nan")
    print(f"run of {steps} steps: {elapsed:.2f} s (sleep floor {steps * step_seconds:.2f} s); "
          f"largest event-loop gap {max(gaps[1:] or [0])} ms over {len(gaps)} ticks; "
          f"{len(shown)} previews at {fps:.1f} frames/s", flush=True)
    window.shut_down()


if __name__ == "__main__":
    print(f"launch to visible window: {launch_seconds()} s", flush=True)
    run_pauses()
