"""Peak memory and time of reading a whole stack vs one channel, for several TIFF layouts.

    python benchmarks/bench_read_memory.py [--gib 1.0] [--folder /tmp]

Linux only. Each read runs in a fresh interpreter; peak extra RSS = the high-water mark of
resident memory during the read (VmHWM, reset after imports) minus the RSS after imports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

REPO_ROOT = Path(__file__).resolve().parents[1]
HEIGHT = WIDTH = 2048
N_C = 4

MEASURE = r"""
import json, sys, time
import psutil
from labelfree_app.io import read_image
with open("/proc/self/clear_refs", "w") as clear_refs:
    clear_refs.write("5")  # reset the peak (VmHWM) to the RSS after imports
path, channel = sys.argv[1], sys.argv[2]
baseline = psutil.Process().memory_info().rss
start = time.perf_counter()
image = read_image(path, channel=None if channel == "all" else int(channel))
seconds = time.perf_counter() - start
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
print(json.dumps({"extra": peak - baseline, "seconds": seconds, "nbytes": image.data.nbytes}))
"""


def planes(n_z: int, order: str):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 4096, (HEIGHT, WIDTH), dtype=np.uint16)  # compressible but not trivially
    outer, inner = (n_z, N_C) if order == "ZC" else (N_C, n_z)
    for a in range(outer):
        for b in range(inner):
            yield noise + np.uint16(a * 7 + b)


def write(path: Path, layout: str, n_z: int) -> None:
    if layout == "imagej ZCYX (interleaved channels)":
        tifffile.imwrite(path, planes(n_z, "ZC"), shape=(n_z, N_C, HEIGHT, WIDTH), dtype=np.uint16,
                         imagej=True, metadata={"axes": "ZCYX"})
    elif layout == "ome CZYX":
        tifffile.imwrite(path, planes(n_z, "CZ"), shape=(N_C, n_z, HEIGHT, WIDTH), dtype=np.uint16,
                         ome=True, metadata={"axes": "CZYX"})
    elif layout == "ome CZYX zlib":
        tifffile.imwrite(path, planes(n_z, "CZ"), shape=(N_C, n_z, HEIGHT, WIDTH), dtype=np.uint16,
                         ome=True, compression="zlib", compressionargs={"level": 1}, metadata={"axes": "CZYX"})


def measure(path: Path, channel: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path), channel], capture_output=True, text=True,
                         cwd=REPO_ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gib", type=float, default=1.0, help="uncompressed size of each stack in GiB")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    n_z = max(1, round(args.gib * 2**30 / (N_C * HEIGHT * WIDTH * 2)))
    mib = 2**20
    print(f"stacks of C={N_C} x Z={n_z} x {HEIGHT}x{WIDTH} uint16 ({N_C * n_z * HEIGHT * WIDTH * 2 / mib:.0f} MiB)")
    for layout in ("imagej ZCYX (interleaved channels)", "ome CZYX", "ome CZYX zlib"):
        with tempfile.TemporaryDirectory(dir=args.folder) as folder:
            path = Path(folder) / "stack.tif"
            start = time.perf_counter()
            write(path, layout, n_z)
            written = time.perf_counter() - start
            size = path.stat().st_size
            one = measure(path, "1")
            full = measure(path, "all")
        print(
            f"{layout:38s} file {size / mib:6.0f} MiB (write {written:5.1f} s) | "
            f"one channel: peak +{one['extra'] / mib:5.0f} MiB, {one['seconds']:5.2f} s | "
            f"whole file: peak +{full['extra'] / mib:5.0f} MiB, {full['seconds']:5.2f} s"
        )


if __name__ == "__main__":
    main()
