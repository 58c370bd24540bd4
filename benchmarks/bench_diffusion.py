"""Time and memory of whole-image diffusion sampling: 512×512, 8 samples, 10/25/50 steps.

    python benchmarks/bench_diffusion.py                         # the bundled diffusion models
    python benchmarks/bench_diffusion.py --model PATH --steps 25 --sampler dpmpp2m

Each case runs in a fresh subprocess so its peak RSS (VmHWM) is its own. The network size is the
model's own (printed with its parameter count); the weights do not change the speed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import peak_rss_mb  # noqa: E402


def run_case(package: str, size: int, samples: int, steps: int, sampler: str, group: int | None) -> dict:
    import numpy as np

    from labelfree_app.core.engine import PredictionEngine, PredictSettings
    from labelfree_app.io import Image
    from labelfree_app.models.package import load_package

    engine = PredictionEngine(load_package(package), device="cpu")
    if group:
        os.environ["LABELFREE_DIFFUSION_GROUP"] = str(group)
    channels = engine.input_spec.channels
    shape = (1, channels, size, size) if engine.input_spec.z_as_channels else (channels, 1, size, size)
    image = Image.from_array(np.random.default_rng(0).normal(100, 10, shape).astype(np.float32), "CZYX")
    start = time.perf_counter()
    result = engine.predict(image, PredictSettings(samples=samples, steps=steps, sampler=sampler))
    seconds = time.perf_counter() - start
    net = engine._runner.network
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "parameters": sum(p.numel() for p in net.parameters()),
            "finite": bool(np.isfinite(result.prediction).all() and np.isfinite(result.variance).all())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", action="append", help="package folder (default: bundled diffusion models)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--sampler", default="dpmpp2m")
    parser.add_argument("--group", type=int, help="samples carried together (default: the engine's choice)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        c = json.loads(args.case)
        print(json.dumps(run_case(c["package"], c["size"], c["samples"], c["steps"], c["sampler"], c["group"])))
        return 0
    import torch

    models = args.model or [str(p.parent) for p in sorted((ROOT / "resources" / "models").glob("*/manifest.json"))
                            if json.loads(p.read_text()).get("kind") == "diffusion"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.size}x{args.size}, "
          f"{args.samples} samples, sampler {args.sampler}")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "LABELFREE_HOME": os.environ.get("LABELFREE_HOME", tmp)}
        for model in models:
            kwargs = json.loads((Path(model) / "manifest.json").read_text())["architecture"]["kwargs"]
            print(f"{Path(model).name}: {kwargs}")
            for steps in args.steps:
                case = {"package": model, "size": args.size, "samples": args.samples, "steps": steps,
                        "sampler": args.sampler, "group": args.group}
                proc = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], capture_output=True,
                                      text=True, env=env)
                if proc.returncode != 0:
                    print(f"  {steps} steps: failed\n{proc.stderr[-1500:]}")
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                print(f"  {steps:3d} steps: {r['seconds']:7.1f} s   peak RSS {r['peak_rss_mb']:6.0f} MB   "
                      f"{r['parameters']:,} parameters   finite={r['finite']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
