"""Batch throughput, and what the batch machinery costs over a bare predict-and-write loop.

    python benchmarks/bench_batch.py                   # 100 inputs of 512×512, bundled generalist U-Net
    python benchmarks/bench_batch.py --n 20 --size 256 # quicker

Both runs read each input, predict with the same engine and write the same OME-TIFF (with input
sha256 provenance). The batch adds planning, the skip check, free-space checks, stale-temp
clean-up and a report rewritten after every job. The machine load is printed: on a shared
machine the two runs are interleaved (batch, loop, batch, loop…) and each round's pair compared,
so background load hits both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_inputs(folder: Path, n: int, size: int) -> list[Path]:
    import numpy as np

    from labelfree_app.io import write_image
    from tests.synthetic_cells import render_cells

    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        cells = render_cells((size, size), seed=i)
        paths.append(write_image(folder / f"field_{i:04d}.tif", cells.brightfield.astype(np.float32), "YX",
                                 channel_names=["Brightfield"]))
    return paths


def run_batch_once(inputs: Path, out: Path, model: str) -> float:
    from labelfree_app.batch import BatchOptions, plan_batch, run_batch
    from labelfree_app.batch.plan import resolve_models

    start = time.perf_counter()
    plan = plan_batch([inputs], resolve_models([model]), out)
    *_, done = run_batch(plan, BatchOptions())
    assert done.counts["done"] == len(plan.jobs), done.counts
    return time.perf_counter() - start


def run_loop_once(paths: list[Path], out: Path, model: str) -> float:
    from labelfree_app.core.engine import PredictionEngine
    from labelfree_app.export import output_paths, write_result
    from labelfree_app.io import read_image
    from labelfree_app.models.registry import ModelRegistry

    start = time.perf_counter()
    package = ModelRegistry().resolve(model)
    engine = PredictionEngine(package)
    out.mkdir(parents=True)
    for path in paths:
        result = engine.predict(read_image(path))
        write_result(result, engine.manifest, [path], output_paths(path, engine.manifest["id"], out))
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--model", default="lf-nuclei-2d")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved batch/loop rounds")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, model {args.model}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = make_inputs(root / "in", args.n, args.size)
        run_loop_once(paths[:2], root / "warm", args.model)  # exports and caches the ONNX model once
        batch_times, loop_times = [], []
        for r in range(args.rounds):
            batch_times.append(run_batch_once(root / "in", root / f"batch{r}", args.model))
            loop_times.append(run_loop_once(paths, root / f"loop{r}", args.model))
            print(f"round {r + 1}: batch {batch_times[-1]:.1f} s, loop {loop_times[-1]:.1f} s")
        batch, loop = statistics.median(batch_times), statistics.median(loop_times)
        paired = [(b - lo) / lo * 100 for b, lo in zip(batch_times, loop_times)]
        print(f"{args.n} images of {args.size}×{args.size} (medians of {args.rounds} rounds):")
        print(f"  batch: {batch:.1f} s = {args.n / batch * 60:.1f} images/min")
        print(f"  plain loop: {loop:.1f} s = {args.n / loop * 60:.1f} images/min")
        print(f"  batch overhead: {statistics.median(paired):+.1f}% median of the paired rounds "
              f"({', '.join(f'{p:+.1f}%' for p in paired)}; target ≤ 5%)")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
