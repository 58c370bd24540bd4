"""Peak RSS of `labelfree predict` against image size: memory should not grow with the image.

    python benchmarks/bench_memory.py [--sizes 2048 8192 32768] [--channels13] [--zarr] [--repo PATH]
                                      [--folder /tmp] [--model PACKAGE]

Generates tiled uint16 TIFFs (tile by tile, so the generator stays small) and optionally one OME-Zarr
and a 13-channel TIFF, runs `labelfree predict` on each in a subprocess with a small 1-channel 2D
U-Net (tests/factories.make_unet_package unless --model is given) and polls the child's RSS with
psutil every 20 ms (and reads its VmHWM), printing peak RSS next to the image size. ``--repo`` runs
the CLI from another checkout (e.g. an exported older commit, for before/after figures).
Targets (issue 16): ≤ 1.5 GB each and within 10 % of each other; 13-channel 8192² ≤ 2 GB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import tifffile

REPO_ROOT = Path(__file__).resolve().parents[1]
TILE = 512


def tiles(size: int, channels: int = 1):
    """Tiles of a smooth-ish uint16 pattern plus noise, channel by channel, row-major."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:TILE, 0:TILE].astype(np.float32)
    for c in range(channels):
        for ty in range(0, size, TILE):
            for tx in range(0, size, TILE):
                base = 2000 + 800 * np.sin((yy + ty) / 37.0 + c) * np.cos((xx + tx) / 53.0)
                yield (base + rng.normal(0, 60, (TILE, TILE))).astype(np.uint16)


def make_tiff(path: Path, size: int, channels: int = 1) -> None:
    shape = (channels, size, size) if channels > 1 else (size, size)
    tifffile.imwrite(path, tiles(size, channels), shape=shape, dtype=np.uint16, tile=(TILE, TILE), bigtiff=True,
                     ome=True, metadata={"axes": "CYX" if channels > 1 else "YX"})


def make_zarr(path: Path, size: int) -> None:
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    array = group.create_array("s0", shape=(1, 1, size, size), dtype=np.uint16, chunks=(1, 1, 1024, 1024))
    gen = tiles(size)
    for ty in range(0, size, TILE):
        row = np.concatenate([next(gen) for _ in range(0, size, TILE)], axis=1)
        array[0, 0, ty:ty + TILE, :] = row
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "c", "type": "channel"}, {"name": "z", "type": "space"},
                 {"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        "datasets": [{"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1, 1]}]}]}]}


def make_model(folder: Path) -> Path:
    sys.path.insert(0, str(REPO_ROOT))
    from tests.factories import make_unet_package

    return Path(make_unet_package(folder, depth=3, base=8, model_id="bench-unet").path)


def measure(repo: Path, image: Path, model: Path, out: Path, extra: list[str]) -> tuple[float, float, int]:
    """(peak RSS GB polled, VmHWM GB, exit code) of one `labelfree predict`."""
    env = {**os.environ, "PYTHONPATH": str(repo)}
    cmd = [sys.executable, "-m", "labelfree_app.cli", "predict", str(image), "-o", str(out), "--model", str(model),
           "-q", *extra]
    proc = subprocess.Popen(cmd, env=env, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    handle = psutil.Process(proc.pid)
    peak = hwm = 0
    while proc.poll() is None:
        try:
            peak = max(peak, handle.memory_info().rss)
            with open(f"/proc/{proc.pid}/status") as status:
                hwm = max(hwm, next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:")))
        except (psutil.Error, OSError, StopIteration):
            pass
        time.sleep(0.02)
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode:
        print(err.strip().splitlines()[-1:] or "", file=sys.stderr)
    return peak / 1e9, hwm / 1e9, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--channels13", action="store_true", help="also a 13-channel 8192² TIFF")
    parser.add_argument("--zarr", action="store_true", help="also an 8192² OME-Zarr")
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="checkout whose CLI runs")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_memory_", dir=args.folder))
    try:
        model = args.model or make_model(work / "models")
        cases: list[tuple[str, Path, list[str]]] = []
        for size in args.sizes:
            path = work / f"tiled_{size}.ome.tif"
            make_tiff(path, size)
            cases.append((f"{size}² uint16 tiled TIFF", path, []))
        if args.zarr:
            path = work / "img_8192.ome.zarr"
            make_zarr(path, 8192)
            cases.append(("8192² uint16 OME-Zarr", path, []))
        if args.channels13:
            path = work / "c13_8192.ome.tif"
            make_tiff(path, 8192, channels=13)
            cases.append(("13×8192² uint16 tiled TIFF (channel 0)", path, ["--channel", "0"]))
        print(f"repo: {args.repo}")
        print(f"{'input':42s} {'input MB':>9s} {'peak RSS GB':>12s} {'VmHWM GB':>9s} {'s':>7s}")
        for label, path, extra in cases:
            size_mb = sum(p.stat().st_size for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()) / 1e6
            out = work / f"out_{path.stem}"
            start = time.perf_counter()
            peak, hwm, code = measure(args.repo, path, model, out, extra)
            status = "" if code == 0 else f"  (exit {code})"
            print(f"{label:42s} {size_mb:9.0f} {peak:12.2f} {hwm:9.2f} {time.perf_counter() - start:7.1f}{status}",
                  flush=True)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
