"""The window on a huge image: its peak memory, and screenshots zoomed out (overview) and zoomed in.

    python benchmarks/gui_overview.py make /tmp/huge.tif --size 20000     # a tiled uint16 TIFF
    QT_QPA_PLATFORM=offscreen python benchmarks/gui_overview.py shot /tmp/huge.tif /tmp/shots
    QT_QPA_PLATFORM=offscreen python benchmarks/gui_overview.py run /tmp/huge.tif /tmp/shots --model MODEL_ID

``make`` writes the file tile by tile (its own process, so the window's peak is not polluted);
``shot`` opens it in the real window (``CoreBackend``), waits for the overview, saves
``overview.png``, zooms into a 1200×700 region, waits for the full-resolution read, saves
``zoomed.png`` and prints the seconds each took and the process's peak RSS. ``run`` opens it, presses
Run with a 2D U-Net (streamed to the cache), saves ``run.png`` once the prediction's overview is
shown and ``run_zoomed.png`` once both panels read the zoomed region, and prints the run's seconds
and the highest RSS sampled during the run (every 100 ms) besides the process's peak.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

TILE = 256
SPACING = 120  # cells on a jittered lattice


def make_tile(y0: int, x0: int, size: int) -> np.ndarray:
    """Cells (a bright disc with a ring and fine texture) over a slow background, with noise."""
    y, x = np.mgrid[y0:y0 + TILE, x0:x0 + TILE].astype(np.float32)
    iy, ix = np.floor(y / SPACING), np.floor(x / SPACING)
    jitter = np.sin(iy * 12.9898 + ix * 78.233) * 43758.5453
    jy, jx = (jitter % 1.0 - 0.5) * 40, ((jitter * 7.0) % 1.0 - 0.5) * 40
    r = np.hypot(y - (iy * SPACING + SPACING / 2 + jy), x - (ix * SPACING + SPACING / 2 + jx))
    radius = 30 + 12 * ((jitter * 3.0) % 1.0)
    inside = r < radius
    value = 1500 + 700 * np.cos(2 * np.pi * y / size) * np.cos(2 * np.pi * x / size)
    value += inside * (900 + 350 * np.sin(0.9 * x) * np.sin(0.9 * y))  # texture only full resolution shows
    value += (np.abs(r - radius) < 2.5) * 1400
    value += np.random.default_rng(y0 * 7919 + x0).normal(0, 60, (TILE, TILE))
    return np.clip(value, 0, 65535).astype(np.uint16)


def make(path: Path, size: int) -> None:
    import tifffile

    def tiles():
        for y0 in range(0, size, TILE):
            for x0 in range(0, size, TILE):
                yield make_tile(y0, x0, size)

    start = time.perf_counter()
    tifffile.imwrite(path, tiles(), shape=(size, size), dtype=np.uint16, tile=(TILE, TILE), bigtiff=True)
    print(f"wrote {path} ({size}×{size} uint16, {TILE}² tiles) in {time.perf_counter() - start:.0f} s")


def _window(out_dir: Path) -> tuple[Any, Any]:
    """The application and a shown 1600×900 main window over the real backend."""
    from PySide6.QtWidgets import QApplication

    import labelfree_app.gui  # noqa: F401 (the Qt binding work-arounds)
    import pyqtgraph as pg

    from labelfree_app.gui.backend import CoreBackend
    from labelfree_app.gui.main_window import MainWindow
    from labelfree_app.gui.settings import GuiSettings

    app = QApplication.instance() or QApplication(sys.argv[:1])
    pg.setConfigOptions(imageAxisOrder="row-major")
    window = MainWindow(CoreBackend(), GuiSettings())
    window.resize(1600, 900)
    window.show()
    out_dir.mkdir(parents=True, exist_ok=True)
    return app, window


def shot(path: Path, out_dir: Path) -> int:
    from PySide6.QtCore import QTimer

    app, window = _window(out_dir)
    view, panel, times = window.input_view, window.panels.input_panel, {"start": time.perf_counter()}

    def grab(name: str) -> None:
        app.processEvents()
        window.grab().save(str(out_dir / name), "PNG")
        print(f"saved {out_dir / name}")

    def on_overview() -> None:
        times["overview"] = time.perf_counter()
        depth, height, width = view.overview.full_shape
        QTimer.singleShot(300, lambda: (window.panels.probe(width / 2 + 0.5, height / 2 + 0.5),
                                        grab("overview.png"), zoom(height, width)))

    def zoom(height: int, width: int) -> None:
        times["zoom"] = time.perf_counter()
        cy, cx = height // 2, width // 2
        panel.view_box.setRange(xRange=(cx - 600, cx + 600), yRange=(cy - 350, cy + 350), padding=0)

    def on_region(bounds: tuple) -> None:
        times["region"] = time.perf_counter()
        depth, height, width = view.overview.full_shape
        window.panels.probe(width / 2 + 0.5, height / 2 + 0.5)
        QTimer.singleShot(300, lambda: (grab("zoomed.png"), app.quit()))

    view.overviewShown.connect(on_overview)
    view.regionLoaded.connect(on_region)
    QTimer.singleShot(60_000 * 5, app.quit)  # a safety net
    window.open_paths([path])
    app.exec()
    window.shut_down()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"overview after {times.get('overview', float('nan')) - times['start']:.1f} s; full-resolution region "
          f"{times.get('region', float('nan')) - times.get('zoom', float('nan')):.2f} s after the zoom")
    print(f"peak RSS of the window process: {peak_mib:.0f} MiB")
    return 0 if "region" in times else 1


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(path: Path, out_dir: Path, model_id: str) -> int:
    """Open ``path``, Run ``model_id`` on it, screenshot the streamed result; print times and memory."""
    from PySide6.QtCore import QTimer

    app, window = _window(out_dir)
    shown = window.runner.saved_view.prediction
    times: dict[str, float] = {"start": time.perf_counter()}
    rss = {"before": 0.0, "run": 0.0}
    sampler = QTimer()
    sampler.setInterval(100)
    sampler.timeout.connect(lambda: rss.__setitem__("run", max(rss["run"], _rss_mib())))

    def grab(name: str) -> None:
        app.processEvents()
        window.grab().save(str(out_dir / name), "PNG")
        print(f"saved {out_dir / name}")

    def start() -> None:
        window.controls.set_models(window.models, model_id)
        rss["before"] = _rss_mib()
        times["run"] = time.perf_counter()
        sampler.start()
        if not window.run_current():
            app.quit()

    def finished(record: object, status: str) -> None:
        sampler.stop()
        times["done"] = time.perf_counter()
        print(f"run {status} after {times['done'] - times['run']:.1f} s: "
              f"{window.statusBar().currentMessage()}")
        if status != "done":
            app.quit()

    def on_prediction() -> None:
        depth, height, width = shown.overview.full_shape
        QTimer.singleShot(300, lambda: (window.panels.probe(width / 2 + 0.5, height / 2 + 0.5), grab("run.png"),
                                        window.panels.input_panel.view_box.setRange(
                                            xRange=(width // 2 - 600, width // 2 + 600),
                                            yRange=(height // 2 - 350, height // 2 + 350), padding=0)))

    def on_region(bounds: tuple) -> None:
        if window.input_view.loaded is not None and shown.loaded is not None:
            depth, height, width = shown.overview.full_shape
            window.panels.probe(width / 2 + 0.5, height / 2 + 0.5)
            QTimer.singleShot(300, lambda: (grab("run_zoomed.png"), app.quit()))

    window.input_view.overviewShown.connect(lambda: QTimer.singleShot(0, start) if "run" not in times else None)
    window.runner.finished.connect(finished)
    shown.overviewShown.connect(on_prediction)
    for view in (window.input_view, shown):
        view.regionLoaded.connect(on_region)
    QTimer.singleShot(60_000 * 60, app.quit)  # a safety net
    QTimer.singleShot(2000, lambda: window.open_paths([path]))  # after the models are listed
    app.exec()
    window.shut_down()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"RSS before Run {rss['before']:.0f} MiB, highest during the run {rss['run']:.0f} MiB; "
          f"peak RSS of the window process {peak_mib:.0f} MiB")
    return 0 if "done" in times else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    making = sub.add_parser("make")
    making.add_argument("path", type=Path)
    making.add_argument("--size", type=int, default=20000)
    shooting = sub.add_parser("shot")
    shooting.add_argument("path", type=Path)
    shooting.add_argument("out_dir", type=Path)
    running = sub.add_parser("run")
    running.add_argument("path", type=Path)
    running.add_argument("out_dir", type=Path)
    running.add_argument("--model", required=True, help="a 2D U-Net model id")
    args = parser.parse_args()
    if args.command == "make":
        make(args.path, args.size)
        return 0
    if args.command == "run":
        return run(args.path, args.out_dir, args.model)
    return shot(args.path, args.out_dir)


if __name__ == "__main__":
    sys.exit(main())
