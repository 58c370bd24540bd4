"""Batch throughput: N × 1024² images through ``run_batch``, with and without reading the next input
ahead, against the time the network itself spent on the same tiles (in the same process).

    python benchmarks/bench_batch_throughput.py                   # lf-nuclei-2d, 8 images
    python benchmarks/bench_batch_throughput.py --images 100 --model isl-dapi-unet --precision int8

Prints images/s and wall time / network time (1.00 = limited by the network alone) for each mode,
alternating the modes so that a drifting machine load hits both alike.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lf-nuclei-2d")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()

    import tifffile

    from labelfree_app.batch import BatchOptions, local, plan_batch, run_batch
    from labelfree_app.batch.plan import resolve_models
    from labelfree_app.batch.process import EngineCache
    from labelfree_app.core.engine import PredictSettings

    with tempfile.TemporaryDirectory(prefix="labelfree-batch-bench-") as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        rng = np.random.default_rng(0)
        for k in range(args.images):  # compressed like a microscope's files, so reading costs what it costs
            tifffile.imwrite(inputs / f"f{k:03d}.tif", rng.normal(100, 10, (args.size, args.size)).astype(np.uint16),
                             compression="zlib")
        models = resolve_models([args.model])
        options = BatchOptions(settings=PredictSettings(precision=args.precision), hash_inputs=True)
        engines = EngineCache()
        network = {"s": 0.0}

        def timed_runner(engine):
            runner = engine._load_runner()
            if not getattr(runner, "_timed", False):
                real = runner.predict

                def predict(batch):
                    start = time.perf_counter()
                    try:
                        return real(batch)
                    finally:
                        network["s"] += time.perf_counter() - start

                runner.predict, runner._timed = predict, True
            return runner

        # warm-up: load and time-wrap the runner once
        engine = engines.get(models[0], options.settings.device)
        engine._precision = engine.resolve(options.settings)["precision"]
        timed_runner(engine)
        rows = {True: [], False: []}
        for _ in range(args.rounds):
            for prefetch in (True, False):
                out = Path(tmp) / "out"
                shutil.rmtree(out, ignore_errors=True)
                local.PREFETCH = prefetch
                network["s"] = 0.0
                start = time.perf_counter()
                *_, done = run_batch(plan_batch([inputs], models, out), options, engines=engines)
                wall = time.perf_counter() - start
                assert done.ok, done.rows
                rows[prefetch].append((wall, network["s"]))
    print(f"{args.images} × {args.size}² with {args.model} ({args.precision}); medians of {args.rounds} rounds")
    for prefetch, figures in rows.items():
        wall = float(np.median([w for w, _ in figures]))
        net = float(np.median([n for _, n in figures]))
        print(f"prefetch {'on ' if prefetch else 'off'}: {args.images / wall:5.2f} images/s, wall {wall:6.1f} s, "
              f"network {net:6.1f} s, wall/network {wall / net:4.2f}")


if __name__ == "__main__":
    main()
