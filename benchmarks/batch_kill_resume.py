"""Kill a `labelfree batch --tta` with SIGKILL ten times, check what each kill left, then resume to the end.

    python benchmarks/batch_kill_resume.py            # 40 inputs of 128×128, the demo U-Net from tests/fixtures
    python benchmarks/batch_kill_resume.py --n 20     # quicker

An uninterrupted reference batch is run first (it also times a job). Then one output folder is
batched again and again, each run killed with SIGKILL once a given number of jobs are done plus a
random part of a job (so kills land in reading, predicting and writing); the ten targets are spread
over the run. After each kill every output is read back (shape, finite pixels) and the leftovers
are counted: temp ``.part`` files and lock files (a killed batch cannot remove its lock; the next
batch takes over a lock whose pid is gone). A last run resumes to completion, and its report and
outputs are checked against the reference. POSIX only (SIGKILL).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL_ID = "demo-nuclei-unet"
KILLS = 10


def make_inputs(folder: Path, n: int, size: int) -> None:
    import numpy as np

    from labelfree_app.io import write_image
    from tests.synthetic_cells import render_cells

    folder.mkdir(parents=True)
    for i in range(n):
        cells = render_cells((size, size), seed=i)
        write_image(folder / f"field_{i:03d}.tif", cells.brightfield.astype(np.float32)[None], "ZYX")


def batch_command(inputs: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "labelfree_app.cli", "batch", str(inputs), "-o", str(out), "--model", MODEL_ID,
            "--tta", "--device", "cpu", "-q"]


def outputs(out: Path) -> list[Path]:
    return sorted(out.glob("*.ome.tif"))


def check_outputs(out: Path, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(readable and right, corrupt, jobs with a prediction but no variance)."""
    import numpy as np

    from labelfree_app.errors import LabelFreeError
    from labelfree_app.io import read_image

    good = corrupt = 0
    for path in outputs(out):
        try:
            data = read_image(path).data
            ok = data.shape == shape and bool(np.isfinite(data).all())
        except LabelFreeError:
            ok = False
        good, corrupt = good + ok, corrupt + (not ok)
    predictions = {p.name[: -len(".ome.tif")] for p in outputs(out) if "__variance" not in p.name}
    variances = {p.name[: -len("__variance.ome.tif")] for p in outputs(out) if "__variance" in p.name}
    return good, corrupt, len(predictions - variances)


def leftovers(out: Path) -> tuple[int, int]:
    names = os.listdir(out)
    return (sum(n.endswith(".part") for n in names), sum(n.startswith(".labelfree-batch") for n in names))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40, help="number of inputs")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed for the kill moments")
    args = parser.parse_args()
    if os.name == "nt":
        print("POSIX only (uses SIGKILL)")
        return 2
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="lf-kill-resume-") as tmp_text:
        tmp = Path(tmp_text)
        home = tmp / "home"
        shutil.copytree(ROOT / "tests" / "fixtures" / "models" / MODEL_ID, home / "data" / "models" / MODEL_ID)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "LABELFREE_HOME": str(home), "OMP_NUM_THREADS": "1"}
        inputs = tmp / "inputs"
        make_inputs(inputs, args.n, args.size)
        shape = (1, 1, args.size, args.size)

        reference = tmp / "reference"
        start = time.perf_counter()
        subprocess.run(batch_command(inputs, reference), env=env, check=True, capture_output=True)
        reference_s = time.perf_counter() - start
        # Startup (imports, model load) is what is left once the jobs are accounted for.
        with open(reference / "batch_report.csv", newline="", encoding="utf-8") as handle:
            job_s = sum(float(r["seconds"]) for r in csv.DictReader(handle)) / args.n
        print(f"reference: {args.n} inputs {args.size}×{args.size}, --tta, {reference_s:.1f} s "
              f"({job_s * 1000:.0f} ms a job)")

        out = tmp / "out"
        targets = [round(args.n * (k + 0.5) / KILLS) for k in range(KILLS)]
        totals = {"corrupt": 0, "temps": 0, "locks": 0, "half_jobs": 0}
        print(f"{'kill':>4} {'after jobs':>10} {'outputs':>7} {'corrupt':>7} {'no variance':>11} "
              f"{'.part':>5} {'locks':>5}")
        for k, target in enumerate(targets, 1):
            process = subprocess.Popen(batch_command(inputs, out), env=env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            # Wait for `target` predictions, then a random part of a job, so kills land anywhere in a job.
            while process.poll() is None and len([p for p in outputs(out) if "__variance" not in p.name]) < target:
                time.sleep(0.005)
            time.sleep(rng.random() * job_s)
            finished_first = process.poll() is not None
            process.send_signal(signal.SIGKILL)
            process.wait()
            good, corrupt, half = check_outputs(out, shape)
            temps, locks = leftovers(out)
            for key, value in zip(totals, (corrupt, temps, locks, half)):
                totals[key] += value
            jobs_done = len([p for p in outputs(out) if "__variance" not in p.name]) - half
            print(f"{k:>4} {jobs_done:>10} {good + corrupt:>7} {corrupt:>7} {half:>11} {temps:>5} {locks:>5}"
                  + ("  (had finished before the kill)" if finished_first else ""))

        resumed = subprocess.run(batch_command(inputs, out), env=env, capture_output=True, text=True, check=False)
        good, corrupt, half = check_outputs(out, shape)
        temps, locks = leftovers(out)
        with open(out / "batch_report.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        keys = [(r["input"], r["model"]) for r in rows]
        statuses = {s: sum(r["status"] == s for r in rows) for s in sorted({r["status"] for r in rows})}
        redone = sum("redone" in r["note"] for r in rows)
        import numpy as np

        from labelfree_app.io import read_image

        same = sum(np.array_equal(read_image(p).data, read_image(reference / p.name).data) for p in outputs(out))
        print()
        print(f"after {KILLS} kills: corrupt outputs found {totals['corrupt']}, jobs with a prediction but no "
              f"variance {totals['half_jobs']}, leftover .part files {totals['temps']}, leftover locks "
              f"{totals['locks']} (summed over the kills)")
        print(f"resume: exit {resumed.returncode}; report {len(rows)} rows ({len(set(keys))} distinct), "
              f"{', '.join(f'{n} {s}' for s, n in statuses.items())}; {redone} redone as incomplete")
        print(f"final folder: {good} good outputs of {2 * args.n}, {corrupt} corrupt, {half} without variance, "
              f"{temps} .part files, {locks} lock files; {same}/{2 * args.n} identical to the uninterrupted run")
        ok = (resumed.returncode == 0 and len(rows) == args.n == len(set(keys)) and good == 2 * args.n
              and set(statuses) <= {"done", "skipped"} and corrupt == temps == locks == half == 0
              and same == 2 * args.n and totals["corrupt"] == 0)
        print("consistent" if ok else "NOT CONSISTENT")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
