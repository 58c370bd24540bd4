"""Reading one channel of a large stack needs about that channel's memory, not the file's."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

REPO_ROOT = Path(__file__).resolve().parents[2]
N_Z, N_C, HEIGHT, WIDTH = 32, 4, 2048, 2048  # 1 GiB of uint16
PICKED_CHANNEL = 2

# Run in a fresh interpreter so the peak belongs to this read alone. On Linux the peak is the
# address space's high-water mark (VmHWM), reset after the imports; ru_maxrss is not used there
# because it keeps the pytest parent's RSS across fork + exec.
MEASURE_SCRIPT = r"""
import json, sys, time
import psutil
from labelfree_app.io import read_image

def peak_rss():
    if sys.platform.startswith("linux"):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    if sys.platform == "win32":
        return psutil.Process().memory_info().peak_wset
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)

if sys.platform.startswith("linux"):
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
path, channel = sys.argv[1], int(sys.argv[2])
baseline = psutil.Process().memory_info().rss
start = time.perf_counter()
image = read_image(path, channel=channel)
seconds = time.perf_counter() - start
print(json.dumps({
    "baseline": baseline, "peak": peak_rss(), "seconds": seconds, "shape": list(image.shape),
    "corner": [int(v) for v in image.data[0, :, 0, 0]], "names": list(image.channel_names),
}))
"""


def plane_value(z: int, c: int) -> int:
    return 1000 * c + z


def write_hyperstack_page_by_page(path: Path) -> None:
    """An ImageJ ZCYX hyperstack, so one channel's planes are interleaved with the others."""

    def planes():
        for z in range(N_Z):
            for c in range(N_C):
                yield np.full((HEIGHT, WIDTH), plane_value(z, c), dtype=np.uint16)

    tifffile.imwrite(path, planes(), shape=(N_Z, N_C, HEIGHT, WIDTH), dtype=np.uint16, imagej=True,
                     metadata={"axes": "ZCYX", "Labels": ["BF", "DAPI", "GFP", "RFP"] * N_Z})


def test_reading_one_channel_of_a_1gb_stack_keeps_peak_memory_far_below_the_file_size(tmp_path: Path) -> None:
    path = tmp_path / "big_hyperstack.tif"
    start = time.perf_counter()
    write_hyperstack_page_by_page(path)
    write_seconds = time.perf_counter() - start
    try:
        file_size = path.stat().st_size
        assert file_size >= 2**30
        result = subprocess.run(
            [sys.executable, "-c", MEASURE_SCRIPT, str(path), str(PICKED_CHANNEL)],
            capture_output=True, text=True, cwd=REPO_ROOT, timeout=300, check=False,
        )
        assert result.returncode == 0, result.stderr
        measured = json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        path.unlink(missing_ok=True)

    extra = measured["peak"] - measured["baseline"]
    channel_bytes = N_Z * HEIGHT * WIDTH * 2
    print(
        f"\nfile {file_size / 2**20:.0f} MiB (written in {write_seconds:.1f} s); one channel "
        f"{channel_bytes / 2**20:.0f} MiB read in {measured['seconds']:.1f} s; "
        f"peak extra RSS {extra / 2**20:.0f} MiB ({extra / file_size:.2f} x file size)"
    )
    assert measured["shape"] == [1, N_Z, HEIGHT, WIDTH]
    assert measured["names"] == ["GFP"]
    assert measured["corner"] == [plane_value(z, PICKED_CHANNEL) for z in range(N_Z)]
    assert extra < 0.5 * file_size + 150 * 2**20
    # Tighter: the returned channel plus a little, far from a full read.
    assert extra < channel_bytes + 100 * 2**20
