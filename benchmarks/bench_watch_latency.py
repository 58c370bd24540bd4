"""Latency of `labelfree watch`: from an image being complete in the watched folder to its prediction written.

    python benchmarks/bench_watch_latency.py [--images 5] [--size 1024] [--settle 2] [--model lf-nuclei-2d]

A writer copies 1024² images into the folder one at a time (written under a temporary name, then
renamed, as acquisition software does); the latency of each is the time from the rename to its
output's appearance. It includes the settle time (a file must be unchanged that long) and the
prediction; the figure printed next to it is the same command's `predict` time for one image.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--model", default="lf-nuclei-2d")
    args = parser.parse_args()
    from labelfree_app.io import write_image

    with tempfile.TemporaryDirectory() as tmp:
        folder, out, staged = Path(tmp) / "in", Path(tmp) / "out", Path(tmp) / "staged"
        folder.mkdir()
        staged.mkdir()
        rng = np.random.default_rng(0)
        for i in range(args.images + 1):
            write_image(staged / f"img_{i:03d}.tif", rng.random((1, 1, args.size, args.size), dtype=np.float32),
                        "CZYX")
        command = [sys.executable, "-m", "labelfree_app.cli", "watch", str(folder), "-o", str(out), "-m", args.model,
                   "--settle", str(args.settle), "-q"]
        watch = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        latencies = []
        try:
            for i in range(args.images + 1):  # the first one loads the model: a warm-up, not counted
                name = f"img_{i:03d}.tif"
                part = folder / (name + ".part")
                part.write_bytes((staged / name).read_bytes())
                os.replace(part, folder / name)
                done_at = time.perf_counter()
                output = out / f"img_{i:03d}__{args.model}.ome.tif"
                while not output.exists():
                    if watch.poll() is not None:
                        raise SystemExit(f"watch ended early: {watch.stderr.read()}")
                    time.sleep(0.02)
                if i:
                    latencies.append(time.perf_counter() - done_at)
        finally:
            watch.terminate()
            watch.wait(timeout=60)
        single = out.parent / "single"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "labelfree_app.cli", "predict", str(staged / "img_000.tif"), "-o",
                        str(single), "-m", args.model, "-q"], cwd=ROOT, check=True, capture_output=True)
        predict_s = time.perf_counter() - start
    print(f"watch latency, {args.images} images of {args.size}², settle {args.settle:g} s, {args.model}: "
          f"median {statistics.median(latencies):.2f} s (min {min(latencies):.2f}, max {max(latencies):.2f}); "
          f"one `labelfree predict` command of the same image: {predict_s:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
