"""Peak RSS of `labelfree predict` against image size: memory should not grow with the image.

    python benchmarks/bench_memory.py [--sizes 2048 8192 32768] [--series 100 1000] [--channels13]
                                      [--zarr] [--repo PATH] [--folder /tmp] [--model PACKAGE]

Generates inputs piece by piece (so the generator stays small) under ``--folder`` and deletes them
after: tiled uint16 TIFFs of each size, optionally time series of 512² frames (uncompressed, T×512²),
a 13-plane 8192² z-stack for the bundled 13-channel ``isl-dapi-unet`` (``--channels13``) and an
OME-Zarr. Each case runs `labelfree predict` in its own subprocess with a small 1-channel 2D U-Net
(tests/factories.make_unet_package unless --model is given); the child's peak RSS is the kernel's
``ru_maxrss`` from ``os.wait4`` (the whole process, every allocator and library included).
``--repo`` runs the CLI from another checkout (e.g. an exported older commit, for before/after).
Targets (issue 16): ≤ 1.5 GB each and within 10 % of each other; 13-channel 8192² ≤ 2 GB; a time
series in flat memory (1000 frames as 100).
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
from typing import Iterator

import numpy as np
import tifffile

REPO_ROOT = Path(__file__).resolve().parents[1]
TILE = 512
# The door's own entry point, whether `labelfree_app.cli` is a module or a package.
CLI = ("import sys\ntry:\n    from labelfree_app.cli.main import main\n"
       "except ImportError:\n    from labelfree_app.cli import main\nsys.exit(main())")


def tiles(size: int, channels: int = 1) -> Iterator[np.ndarray]:
    """Tiles of a smooth-ish uint16 pattern plus noise, channel by channel, row-major."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:TILE, 0:TILE].astype(np.float32)
    for c in range(channels):
        for ty in range(0, size, TILE):
            for tx in range(0, size, TILE):
                base = 2000 + 800 * np.sin((yy + ty) / 37.0 + c) * np.cos((xx + tx) / 53.0)
                yield (base + rng.normal(0, 60, (TILE, TILE))).astype(np.uint16)


def frames(count: int, size: int = 512) -> Iterator[np.ndarray]:
    """``count`` uint16 frames of a drifting pattern plus noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for t in range(count):
        base = 2000 + 800 * np.sin((yy + t) / 37.0) * np.cos(xx / 53.0)
        yield (base + rng.normal(0, 60, (size, size))).astype(np.uint16)


def make_tiff(path: Path, size: int, channels: int = 1, axes: str = "CYX") -> None:
    shape = (channels, size, size) if channels > 1 else (size, size)
    tifffile.imwrite(path, tiles(size, channels), shape=shape, dtype=np.uint16, tile=(TILE, TILE), bigtiff=True,
                     ome=True, metadata={"axes": axes if channels > 1 else "YX"})


def make_series(path: Path, count: int, size: int = 512) -> None:
    tifffile.imwrite(path, frames(count, size), shape=(count, size, size), dtype=np.uint16, bigtiff=True,
                     ome=True, metadata={"axes": "TYX"})


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


def measure(repo: Path, image: Path, model: Path, out: Path, extra: list[str]) -> tuple[float, int, str]:
    """(peak RSS MiB from the kernel, exit code, last stderr line) of one `labelfree predict`."""
    env = {**os.environ, "PYTHONPATH": str(repo)}
    cmd = [sys.executable, "-c", CLI, "predict", str(image), "-o", str(out), "--model", str(model), "-q", *extra]
    proc = subprocess.Popen(cmd, env=env, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    last = (err.strip().splitlines() or [""])[-1]
    return usage.ru_maxrss / 1024, proc.returncode, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[2048, 8192])
    parser.add_argument("--series", type=int, nargs="*", default=[], help="time series of this many 512² frames")
    parser.add_argument("--channels13", action="store_true", help="also a 13-plane 8192² z-stack (isl-dapi-unet)")
    parser.add_argument("--zarr", action="store_true", help="also an 8192² OME-Zarr")
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="checkout whose CLI runs")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_memory_", dir=args.folder))
    try:
        model = args.model or make_model(work / "models")
        cases: list[tuple[str, Path, Path, list[str]]] = []  # label, input, model, extra options
        for size in args.sizes:
            cases.append((f"{size}² uint16 tiled TIFF", work / f"tiled_{size}.ome.tif", model, []))
        for count in args.series:
            cases.append((f"{count}×512² uint16 time series", work / f"series_{count}.ome.tif", model, []))
        if args.zarr:
            cases.append(("8192² uint16 OME-Zarr", work / "img_8192.ome.zarr", model, []))
        if args.channels13:
            cases.append(("13×8192² z-stack, isl-dapi-unet", work / "c13_8192.ome.tif",
                          REPO_ROOT / "resources" / "models" / "isl-dapi-unet", []))
        print(f"repo: {args.repo}  model: {model.name}")
        print(f"{'input':42s} {'input MB':>9s} {'peak RSS MiB':>13s} {'s':>7s}")
        tiled_peaks: list[float] = []
        for label, path, case_model, extra in cases:
            name = path.name
            if name.startswith("tiled_"):
                make_tiff(path, int(name.split("_")[1].split(".")[0]))
            elif name.startswith("series_"):
                make_series(path, int(name.split("_")[1].split(".")[0]))
            elif name.startswith("c13_"):
                make_tiff(path, 8192, channels=13, axes="ZYX")
            else:
                make_zarr(path, 8192)
            size_mb = sum(p.stat().st_size for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()) / 1e6
            out = work / f"out_{path.stem}"
            start = time.perf_counter()
            peak, code, last = measure(args.repo, path, case_model, out, extra)
            status = "" if code == 0 else f"  (exit {code}: {last})"
            print(f"{label:42s} {size_mb:9.0f} {peak:13.0f} {time.perf_counter() - start:7.1f}{status}", flush=True)
            if name.startswith("tiled_") and code == 0:
                tiled_peaks.append(peak)
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
        if len(tiled_peaks) > 1:
            print(f"tiled TIFF sizes: largest/smallest peak {max(tiled_peaks) / min(tiled_peaks):.3f} (target ≤ 1.10)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
