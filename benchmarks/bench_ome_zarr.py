"""Predict a generated, chunked N×N uint16 OME-Zarr through the CLI; print peak RSS next to its size.

    python benchmarks/bench_ome_zarr.py [--size 20000] [--folder /tmp]

The input is written chunk by chunk (never whole in memory), predicted by a small U-Net with
`labelfree predict --format ome-zarr` in a child process (its peak RSS from getrusage), and the
output is opened back with ome-zarr/zarr: shape, pyramid levels, finite values.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
CHUNK = 1024


def make_input(path: Path, size: int) -> Path:
    """A one-channel uint16 NGFF 0.5 image of size×size in CHUNK² chunks, written chunk row by row."""
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    array = group.create_array("0", shape=(1, 1, size, size), chunks=(1, 1, CHUNK, CHUNK), dtype="uint16")
    x = np.arange(size, dtype=np.float32)
    for start in range(0, size, CHUNK):
        y = np.arange(start, min(size, start + CHUNK), dtype=np.float32)[:, None]
        rows = 1000 + 500 * np.sin(y / 37.0) * np.cos(x / 53.0) + (y % 97)
        array[0, 0, start:start + len(y), :] = rows.astype(np.uint16)
    axes = [{"name": "c", "type": "channel"}] + [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    write_multiscales_metadata(group, [{"path": "0", "coordinateTransformations": [
        {"type": "scale", "scale": [1.0, 1.0, 0.65, 0.65]}]}], fmt=FormatV05(), axes=axes, name="bench",
        metadata={"omero": {"channels": [{"label": "BF", "active": True}]}})
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--folder", default=None)
    args = parser.parse_args()
    from tests.factories import make_unet_package

    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        source = make_input(folder / "big.ome.zarr", args.size)
        made = time.perf_counter() - start
        package = make_unet_package(folder / "models", model_id="bench-unet")
        array_mb = args.size * args.size * 2 / 1024**2
        command = [sys.executable, "-m", "labelfree_app.cli", "predict", str(source), "-o", str(folder / "out"),
                   "--model", str(package.path), "--format", "ome-zarr", "--device", "cpu", "-q"]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        out = folder / "out" / "big__bench-unet.ome.zarr"
        group = zarr.open_group(str(out), mode="r")
        levels = [group[d["path"]] for d in group.attrs["ome"]["multiscales"][0]["datasets"]]
        finite = all(bool(np.isfinite(levels[0][0, 0, y:y + CHUNK, :]).all()) for y in range(0, args.size, CHUNK))
        from ome_zarr.io import parse_url
        from ome_zarr.reader import Reader

        node = next(iter(Reader(parse_url(str(out)))()))
        print(f"input: {args.size}×{args.size} uint16 OME-Zarr, {array_mb:.0f} MB of pixels "
              f"(float32 as the network sees it: {2 * array_mb:.0f} MB); written in {made:.0f} s")
        print(f"predict --format ome-zarr: {seconds:.0f} s, peak RSS {peak_mb:.0f} MB "
              f"({peak_mb / array_mb:.2f}× the uint16 array)")
        print(f"output: levels {[tuple(level.shape) for level in levels]}, dtype {levels[0].dtype}, "
              f"all finite: {finite}, ome-zarr reader sees {len(node.data)} levels, "
              f"provenance: {'provenance' in group.attrs.get('labelfree', {})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
