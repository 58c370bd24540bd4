"""Peak memory of the window while it predicts every time point of a long series and plays it.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_time_lapse_memory.py              # 100 × 512²
    QT_QPA_PLATFORM=offscreen python benchmarks/bench_time_lapse_memory.py --frames 500 --size 1024 \\
        --model lf-nuclei-2d --export

Writes a uint16 TCZYX series, opens it in the real window (CoreBackend) with a small U-Net (an
untrained test network by default, or ``--model`` an installed/bundled one), presses Predict all
time points, then plays the whole series once at ``--fps`` (``--screenshot PNG``: then saves the
window at the middle time point) and, with ``--export``, presses Export time series… (the TCZYX
OME-TIFF and the movie). Samples the process's RSS (psutil) every 50 ms and prints the peak above
the window's RSS before the file was opened, next to the size of the series' input and of its
prediction (float32): the window holds a few frames, not all. The temporary folder is removed.

Measured 2026-12-07 with ``--model lf-nuclei-2d --export`` (offscreen, on a 2-core CPU shared with
other jobs, load 5-8), RSS before opening 405 MiB:

    frames × size   input      peak predicting    + playing          + exporting
    100 × 1024²     200 MiB    1216 (+811) MiB    1216 (+812) MiB    1303 (+898) MiB
    500 × 1024²    1000 MiB    1217 (+812) MiB    1219 (+814) MiB    1298 (+894) MiB

The +810 MiB is predicting one 1024² frame (the model's working memory), whatever the length of the
series. Before the movie was written picture by picture the export peaked at 1346 MiB (+941) for
100 × 1024² (Pillow gathered every GIF frame). 500 frames took 68 min to predict (0.12 frames/s on
the loaded machine; 0.67 frames/s for 100 frames at load 2) and played at 10.9 of the 30 frames/s
asked (31 at load 2: each frame was read from disk on the GUI thread as it was shown).

Since then playback reads the next frames on the thread pool (``gui/predict/frame_cache.py``). A/B,
30 × 1024², the default test U-Net, same machine at load ~7, one run each: 8.6 fps shown of 30 asked
with read-ahead against 4.5 without; peak while playing +602 MiB against +480 (the frames in flight
and the reading threads' memory; the cache still holds 24 arrays). At load 2 both play at 31 fps.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--model", default="", help="an installed model id (default: a small test U-Net)")
    parser.add_argument("--export", action="store_true", help="then Export time series… (TCZYX OME-TIFF + movie)")
    parser.add_argument("--screenshot", type=Path, help="save the window at the middle time point, after playing")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="labelfree-bench-"))
    os.environ["LABELFREE_HOME"] = str(home)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    import numpy as np
    import psutil
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    import labelfree_app.gui  # noqa: F401 (Qt binding work-arounds)
    from labelfree_app.gui.backend import CoreBackend
    from labelfree_app.gui.main_window import MainWindow
    from labelfree_app.gui.settings import GuiSettings
    from labelfree_app.io import write_image
    from labelfree_app.models.registry import ModelRegistry

    app = QApplication.instance() or QApplication([])
    model_id = args.model
    if not model_id:
        from tests.factories import make_unet_package

        model_id = ModelRegistry().install(make_unet_package(home / "packages", base=8).path).id
    rng = np.random.default_rng(0)
    path = home / "series.ome.tif"
    frames, size = args.frames, args.size
    data = np.empty((frames, 1, 1, size, size), np.uint16)
    base = rng.integers(800, 1200, (size, size), dtype=np.uint16)
    for t in range(frames):
        data[t, 0, 0] = np.roll(base, 3 * t, axis=1)
    write_image(path, data, "TCZYX", channel_names=["bright-field"])
    input_mb = data.nbytes / 2**20
    del data, base

    process = psutil.Process()
    peak = [0]
    sampler = QTimer()
    sampler.timeout.connect(lambda: peak.__setitem__(0, max(peak[0], process.memory_info().rss)))
    sampler.start(50)

    def wait(condition, timeout_s: float) -> None:
        end = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > end:
                raise TimeoutError("the benchmark waited too long")
            app.processEvents()
            time.sleep(0.005)

    window = MainWindow(CoreBackend(), GuiSettings())
    window.show()
    wait(lambda: model_id in [m.id for m in window.models], 120)
    window.controls.choose(model_id)
    wait(lambda: True, 0)
    before = process.memory_info().rss
    peak[0] = before
    window.open_paths([path])
    wait(lambda: window.time_lapse.record is not None, 120)
    ended: list[str] = []
    window.time_lapse.finished.connect(ended.append)
    start = time.monotonic()
    assert window.time_lapse.predict_all(), window.statusBar().currentMessage()
    wait(lambda: bool(ended), 24 * 3600)
    predicted_s = time.monotonic() - start
    peak_predicting = peak[0]
    after_predicting = process.memory_info().rss
    shown: list[int] = []
    window.time_lapse.frameShown.connect(shown.append)
    bar = window.time_lapse.bar
    bar.set_time(0)
    bar.set_fps(args.fps)
    start = time.monotonic()
    bar.play()
    wait(lambda: len(shown) >= frames, 3600)
    bar.pause()
    played_s = time.monotonic() - start
    app.processEvents()
    after_playing, peak_playing = process.memory_info().rss, peak[0]
    if args.screenshot is not None:
        window.resize(1600, 900)
        bar.set_time(frames // 2)
        end = time.monotonic() + 1.0  # let the panels repaint
        wait(lambda: time.monotonic() > end, 10)
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        assert window.grab().save(str(args.screenshot), "PNG"), f"could not write {args.screenshot}"
    exported: list[list] = []
    export_s = 0.0
    if args.export:
        window.time_lapse.exported.connect(exported.append)
        (home / "export").mkdir()
        dialogs = len(window.dialogs)  # an error opens one
        start = time.monotonic()
        assert window.time_lapse.export_current(home / "export"), window.statusBar().currentMessage()
        wait(lambda: bool(exported) or len(window.dialogs) > dialogs, 24 * 3600)
        export_s = time.monotonic() - start
        assert exported, window.statusBar().currentMessage()
    mb = 2**20
    print(f"series: {frames} × {size}² uint16 ({input_mb:.0f} MiB input, "
          f"{frames * size * size * 4 / mb:.0f} MiB prediction as float32); model {model_id}; status {ended[0]}")
    print(f"window RSS before opening: {before / mb:.0f} MiB")
    print(f"peak RSS while predicting all: {peak_predicting / mb:.0f} MiB (+{(peak_predicting - before) / mb:.0f} MiB)"
          f" in {predicted_s:.1f} s ({frames / predicted_s:.2f} frames/s)")
    print(f"RSS once predicted: {after_predicting / mb:.0f} MiB (+{(after_predicting - before) / mb:.0f} MiB); "
          f"{len(window.time_lapse._cache)} arrays in the window's frame cache")
    print(f"peak RSS predicting + playing: {peak_playing / mb:.0f} MiB (+{(peak_playing - before) / mb:.0f} MiB); "
          f"played {len(shown)} frames in {played_s:.1f} s ({len(shown) / played_s:.1f} fps shown, {args.fps} asked); "
          f"RSS after playing {after_playing / mb:.0f} MiB (+{(after_playing - before) / mb:.0f} MiB)")
    if exported:
        sizes = ", ".join(f"{Path(p).name} {Path(p).stat().st_size / mb:.0f} MiB" for p in exported[0])
        print(f"peak RSS predicting + playing + exporting: {peak[0] / mb:.0f} MiB (+{(peak[0] - before) / mb:.0f} MiB);"
              f" exported in {export_s:.1f} s: {sizes}")
    window.time_lapse.discard_all()
    window.close()
    shutil.rmtree(home, ignore_errors=True)  # the series (1 GiB at 500 × 1024²) and the export


if __name__ == "__main__":
    main()
