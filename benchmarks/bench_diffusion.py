"""Diffusion in seconds: the whole `labelfree predict` command, its peak RSS, and the quality held.

    python benchmarks/bench_diffusion.py                      # ISL test quadrant, old vs new settings
    python benchmarks/bench_diffusion.py --case new --case new-8steps-3m --repeat 2
    python benchmarks/bench_diffusion.py --model isl-map2-diffusion --case new-10steps --case new-25steps
    python benchmarks/bench_diffusion.py --profile            # where one denoising step's time goes

Input: the ISL condition-B test quadrant (rows/cols 512:1024, read from ../shared/data and written
to a temp folder, never into the repository): the 13-plane phase z-stack for the ISL models, its
focal plane 6 for ``lf-nuclei-2d-diffusion`` (``--model``; default the bundled isl-dapi-diffusion).
Each case runs `labelfree predict` in its own subprocess, timed from spawn to
exit (imports, model load, ONNX export or cache, sampling, writing); its CPU seconds (user + system)
and peak RSS come from ``os.wait4`` (that child only). On a shared machine wall time follows the
load; CPU seconds follow it much less, so compare those between runs made at different loads. Quality on the quadrant against the model's target: Pearson r of the
mean, Spearman(std, RMS error) over 32x32 patches, and the fraction of pixels within 1 and 2 sigma
(training/calibration.py; a model predicting z-scores is compared with the z-scored target). Cases:

- ``old``: the settings before issue 16: 25 DPM-Solver++ 2M steps, eager PyTorch
  (``LABELFREE_BACKEND=torch``; the runner then also keeps all 8 samples in one network call).
- ``new``: the bundled manifest's defaults with ONNX Runtime, 2 samples per call.
- ``new-25steps``: ONNX Runtime at 25 steps (the quality reference for the same backend).
- ``new-10steps``: ONNX Runtime at 10 steps: with the manifest's fitted variance scale where it has one
  (``diffusion.variance_scale``, ``scripts/calibrate_diffusion_steps.py``).
- ``new-8steps``, ``new-8steps-3m``: fewer steps, DPM-Solver++ 2M or 3M.

Timings on a shared CPU are noisy: compare cases of one run (``--repeat`` interleaves them).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data" / "isl_condition_b"
MODEL = "isl-dapi-diffusion"
QUADRANT = (slice(512, 1024), slice(512, 1024))
TARGETS = {"isl-dapi-diffusion": "DAPI", "isl-map2-diffusion": "MAP2", "lf-nuclei-2d-diffusion": "DAPI"}
PLANE = 6  # the single-plane model's input: the quadrant's focal plane (as its ISL test figures)
CASES: dict[str, tuple[dict[str, str], list[str]]] = {
    "old": ({"LABELFREE_BACKEND": "torch"}, ["--steps", "25", "--sampler", "dpmpp2m"]),
    "new": ({}, []),
    "new-25steps": ({}, ["--steps", "25", "--sampler", "dpmpp2m"]),
    "new-10steps": ({}, ["--steps", "10", "--sampler", "dpmpp2m"]),
    "new-8steps": ({}, ["--steps", "8", "--sampler", "dpmpp2m"]),
    "new-8steps-3m": ({}, ["--steps", "8", "--sampler", "dpmpp3m"]),
}


def write_inputs(folder: Path, model: str) -> tuple[Path, np.ndarray]:
    """The test quadrant's input for ``model`` as a TIFF in ``folder``, and its target as an array
    (z-scored over the quadrant for a model that predicts z-scores)."""
    from labelfree_app.io import read_image, read_plane_series, write_image
    from labelfree_app.training.datasets import normalize_target

    stack = np.asarray(read_plane_series(str(DATA / "z_depth-*_PHASE_CONTRAST.png")).data[0])
    target_file = f"depth_computation-MAXPROJECT_{TARGETS[model]}_CONFOCAL.png"
    target = np.asarray(read_image(DATA / target_file).data[0, 0])[QUADRANT].astype(np.float32)
    path = folder / "isl_quadrant.tif"
    if model.startswith("isl-"):
        write_image(path, np.ascontiguousarray(stack[(slice(None), *QUADRANT)]), "ZYX")
        return path, target
    write_image(path, np.ascontiguousarray(stack[(PLANE, *QUADRANT)]), "YX")
    return path, normalize_target(target[None])[0]


def run_predict(inp: Path, out: Path, env_extra: dict[str, str], args: list[str], home: Path,
                model: str = MODEL) -> dict:
    """`labelfree predict` in a subprocess: wall seconds and that process's peak RSS."""
    env = {**os.environ, "LABELFREE_HOME": str(home), **env_extra}
    cmd = [sys.executable, "-m", "labelfree_app.cli", "predict", str(inp), "-o", str(out), "-m", model, "-q", *args]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"predict failed ({proc.returncode}): {err.decode(errors='replace')[-1500:]}")
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


def quality(out: Path, target: np.ndarray) -> dict:
    """Pearson r of the mean and the calibration of the std on the quadrant."""
    from labelfree_app.core.metrics import pearson_r
    from labelfree_app.io import read_image
    from labelfree_app.training.calibration import uncertainty_calibration

    pred_path = next(p for p in out.glob("*.ome.tif") if "__variance" not in p.name)
    var_path = next(out.glob("*__variance.ome.tif"))
    pred = np.asarray(read_image(pred_path).data, dtype=np.float32).reshape(1, *target.shape)
    var = np.asarray(read_image(var_path).data, dtype=np.float32).reshape(1, *target.shape)
    cal = uncertainty_calibration(pred, var, target[None])
    return {"pearson_r": pearson_r(pred, target[None]), "spearman": cal.std_error_spearman,
            "within_1sigma": cal.within_1sigma, "within_2sigma": cal.within_2sigma}


def profile_step(inp: Path, model: str = MODEL) -> None:
    """One engine run with cProfile: the share of the network, sampler maths, tiling and Welford."""
    import cProfile
    import pstats

    from labelfree_app.core.engine import PredictionEngine, PredictSettings
    from labelfree_app.io import read_image
    from labelfree_app.models.package import load_package

    start = time.perf_counter()
    engine = PredictionEngine(load_package(ROOT / "resources" / "models" / model), device="cpu")
    image = read_image(inp)
    engine.predict(image, PredictSettings(samples=8, steps=1))  # export or open the ONNX cache
    print(f"model load + first (1-step) run: {time.perf_counter() - start:.1f} s")
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    engine.predict(image, PredictSettings(samples=8, steps=4))
    profiler.disable()
    print(f"4 steps x 8 samples: {time.perf_counter() - start:.1f} s (tile {engine._tile_used}, "
          f"backend {engine._runner.backend})")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(
        r"onnx_backend.py.*__call__|samplers.py.*step|welford|tiling.py.*(iter_predict|extract|blend)|"
        r"diffusion_runner.py.*(model_fn|predict)|_drive|normalize|events")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="default: old and new")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--model", choices=sorted(TARGETS), default=MODEL)
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is not there")
        return 0
    import torch

    cases = args.case or ["old", "new"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPUs allowed: "
          f"{len(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        inp, target = write_inputs(tmp, args.model)
        if args.profile:
            os.environ["LABELFREE_HOME"] = str(tmp / "home")
            profile_step(inp, args.model)
            return 0
        # one untimed run fills the ONNX export cache, as a user's second prediction finds it
        run_predict(inp, tmp / "warm", {}, ["--steps", "1"], tmp / "home", args.model)
        print(f"model {args.model}, input {inp.name} {tuple(target.shape)}")
        print(f"{'case':15s} {'seconds':>8s} {'cpu s':>7s} {'peak MB':>8s} {'r':>7s} {'spearman':>8s} {'1sigma':>7s} {'2sigma':>7s}")
        for repeat in range(args.repeat):
            for name in cases:
                env_extra, extra = CASES[name]
                out = tmp / f"{name}-{repeat}"
                r = run_predict(inp, out, env_extra, extra, tmp / "home", args.model)
                q = quality(out, target)
                print(f"{name:15s} {r['seconds']:8.1f} {r['cpu_seconds']:7.1f} {r['peak_rss_mb']:8.0f} {q['pearson_r']:7.4f} "
                      f"{q['spearman']:8.4f} {q['within_1sigma']:7.4f} {q['within_2sigma']:7.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
