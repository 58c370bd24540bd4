"""The whole `labelfree predict` command on one 1024² image, and the imports it pays for.

    python benchmarks/bench_predict_command.py                  # lf-nuclei-2d, 5 runs
    python benchmarks/bench_predict_command.py --runs 9 --model isl-dapi-unet

Each figure is a fresh process timed from outside (wall seconds, median of ``--runs``), after one
warm-up run that also builds the ONNX export. It prints the import time of torch and of ONNX
Runtime alone, and whether the command imported torch (it must not once the export is cached).

Measured 2026-12-07 on the 2-core CPU with other work running on it (load average ~1.6), the same command on a
1024² uint16 image, 5 whole processes timed from outside after a warm-up, medians (min-max): lf-nuclei-2d
1.37 s wall (1.35-1.49), 2.32 s CPU, 683 MiB peak.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "TORCH_LOADED="
CLI = ("import sys\nfrom labelfree_app.cli.main import main\nrc = main(sys.argv[1:])\n"
       f"print({MARK!r} + str('torch' in sys.modules), file=sys.stderr)\nsys.exit(rc)\n")


def timed(argv: list[str]) -> tuple[float, str]:
    """Wall seconds of one process and its stderr."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])}… failed:\n{done.stderr}")
    return seconds, done.stderr


def median_of(argv: list[str], runs: int) -> float:
    return statistics.median(timed(argv)[0] for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lf-nuclei-2d")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    import tifffile

    with tempfile.TemporaryDirectory(prefix="labelfree-bench-") as tmp:
        image = Path(tmp) / "input.tif"
        rng = np.random.default_rng(0)
        tifffile.imwrite(image, rng.normal(100, 10, (args.size, args.size)).astype(np.float32))
        command = [sys.executable, "-c", CLI, "predict", str(image), "-o", str(Path(tmp) / "out"),
                   "--model", args.model, "-q"]
        timed(command)  # warm-up: builds the ONNX export once
        _, stderr = timed(command)
        torch_loaded = f"{MARK}True" in stderr
        empty = median_of([sys.executable, "-c", "pass"], args.runs)
        imports = {name: median_of([sys.executable, "-c", f"import {name}"], args.runs) - empty
                   for name in ("torch", "onnxruntime", "labelfree_app.cli.main")}
        whole = median_of(command, args.runs)
    print(f"machine: {sys.platform}, python {sys.version.split()[0]}; medians of {args.runs} fresh processes")
    for name, seconds in imports.items():
        print(f"import {name:<24} {seconds:6.2f} s")
    print(f"labelfree predict {args.size}² ({args.model}): {whole:6.2f} s wall; torch imported: {torch_loaded}")


if __name__ == "__main__":
    main()
