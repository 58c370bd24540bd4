"""Fit the variance scale that lets a diffusion model sample with fewer steps and keep its calibration.

    python scripts/calibrate_diffusion_steps.py lf-nuclei-2d-diffusion isl-map2-diffusion isl-dapi-diffusion
    python scripts/calibrate_diffusion_steps.py isl-map2-diffusion --dry-run     # figures only

A few-step DPM-Solver++ run spreads its samples less than the 25-step run the models' calibration
figures were measured with (within-1σ 0.02-0.08 lower), so its variance map claims more certainty
than the model has. For each bundled diffusion model this script

1. samples its **validation** crops at the reference steps (25) and at the few steps (10), 8 samples,
   with the manifest's sampler and no variance scale;
2. fits one std factor ``s`` (the variance is multiplied by s²): the s that minimises
   (w1(s) − w1₂₅)² + (w2(s) − w2₂₅)², w1 / w2 being the share of validation pixels within 1 / 2
   predicted std, pooled over the crops, on a grid of 0.001. These two shares are the calibration
   figures the models report and the trust feature ``explained_r`` follows the same std, so the fit
   aims at exactly them; matching the median of |error| / std instead would pin one point of the
   curve (near within-1σ) and leave within-2σ free. Spearman(std, error) and Pearson r of the mean
   do not move with a constant factor: they only say whether fewer steps lose information;
3. scores the model's **held-out test** crops (never the validation ones): 25 steps, 10 steps
   unscaled and 10 steps scaled (within-1σ, within-2σ, Spearman of std vs RMS error over 32×32
   patches, Pearson r, explained_r), means over the crops and seeds;
4. writes ``diffusion.variance_scale`` into the manifest (steps, sampler, eta, scale, reference
   steps, what it was fitted on, the figures and the verdict) and makes the few steps the default
   sampling steps only where the held-out figures **hold**: within-1σ and within-2σ each within
   ``--tolerance`` (0.02) of the 25-step figure, Spearman at most ``--spearman-drop`` (0.03) lower and
   Pearson r at most ``--r-drop`` (0.01) lower. Where they do not hold, the default stays (or goes
   back to) the reference steps and the manifest says why; the scale is still recorded, for runs
   that ask for the few steps.

Data (read from ../shared/data, crops written to a temp folder, never into the repository):
- ``isl-*-diffusion`` (``scripts/train_isl_models.py``): validation = the held-out strip
  ``VAL_REGION`` of each training crop (top half, bottom-left quadrant): two 256² crops; test = the
  never-trained quadrant ``TEST_REGION`` cut into four 256² crops.
- ``lf-nuclei-2d-diffusion`` (``scripts/train_generalist.py``): validation = the training run's
  ``val_region`` (128², in the manifest) of training fields of each source it was trained on (ISL
  planes 3/6/9 of both crops, sephaCe set1 planes 1/3/5, every fourth celldetective field, MLCP left);
  test = the six 256² held-out crops its recorded figures were measured on (``diffusion_items``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

MODELS = ROOT / "resources" / "models"
FIGURES = ("within_1sigma", "within_2sigma", "std_error_spearman", "pearson_r", "explained_r")
GRID = np.arange(0.5, 3.0005, 0.001)


@dataclass(frozen=True)
class Crop:
    """One scored crop: its input and target files and where it came from."""

    name: str
    input: Path
    target: Path


# --- the crops ---------------------------------------------------------------------------------
def _write(folder: Path, name: str, inp: np.ndarray, tgt: np.ndarray, axes: str) -> Crop:
    from labelfree_app.io import write_image

    folder.mkdir(parents=True, exist_ok=True)
    i, t = folder / f"{name}_input.tif", folder / f"{name}_target.tif"
    write_image(i, np.ascontiguousarray(inp), axes)
    write_image(t, np.ascontiguousarray(tgt), "YX")
    return Crop(name, i, t)


def isl_crops(manifest: dict, folder: Path) -> tuple[list[Crop], list[Crop]]:
    """Validation strips of the training crops and four 256² crops of the test quadrant."""
    import train_isl_models as isl

    from labelfree_app.io import read_image, read_plane_series
    from labelfree_app.training.sampling import Region

    target_file = next(file for file, name, _ in isl.TARGETS.values() if name == manifest["target"])
    region = (manifest["training"].get("settings") or {}).get("val_region") or isl.VAL_REGION
    val = []
    (folder / "train").mkdir(parents=True, exist_ok=True)
    for spec in isl.crops(folder / "train", target_file):
        stack = np.asarray(read_image(spec.input).data[0])  # (Z, Y, X)
        target = np.asarray(read_image(spec.target).data[0, 0])
        window = Region.parse(region).resolve(target.shape).slices
        val.append(_write(folder / "val", f"val_{Path(spec.input).stem.replace('_input', '')}",
                          stack[(slice(None), *window)], target[window], "ZYX"))
    stack = np.asarray(read_plane_series(str(isl.DATA / "z_depth-*_PHASE_CONTRAST.png")).data[0])
    target = np.asarray(read_image(isl.DATA / target_file).data[0, 0])
    (y0, y1), (x0, x1) = Region.parse(isl.TEST_REGION).resolve(target.shape).bounds
    test = [_write(folder / "test", f"test_{y}_{x}", stack[:, y:y + 256, x:x + 256], target[y:y + 256, x:x + 256],
                   "ZYX") for y in range(y0, y1, 256) for x in range(x0, x1, 256)]
    return val, test


VAL_PICK = {"isl": lambda specs: [s for s in specs if s.plane in (3, 6, 9)],
            "sephace": lambda specs: [s for s in specs if s.plane in (1, 3, 5)],
            "celldetective": lambda specs: specs[::4], "mlcp": lambda specs: specs}


def _source(path: str) -> str:
    name = Path(path).name
    return next(s for s in ("isl", "sephace", "celldetective", "mlcp", "aisegcell") if s in path.lower() or
                name.startswith(s))


def generalist_crops(manifest: dict, folder: Path) -> tuple[list[Crop], list[Crop]]:
    """The training run's validation region of its own training fields (the manifest's list), and the
    held-out diffusion crops."""
    import train_generalist as gen

    from labelfree_app.training import PairSpec
    from labelfree_app.training.datasets import read_input_image, read_target_zyx
    from labelfree_app.training.sampling import Region

    settings = manifest["training"]["settings"]
    sources = [d["source"] for d in settings["datasets"]]
    work = folder / "work"
    gen.prepare(work)  # the ISL and MLCP crops, where the manifest's copies under build/ are gone

    def here(path: str) -> str:
        return path if Path(path).is_file() else str(work / "crops" / Path(path).name)

    specs = [PairSpec(input=here(p["input"]), target=here(p["target"]), plane=p.get("plane"))
             for p in settings["pairs"]]
    val = []
    for source in sources:
        for k, spec in enumerate(VAL_PICK[source]([s for s in specs if _source(s.input) == source])):
            image = np.asarray(read_input_image(spec).data[0, 0])
            window = Region.parse(settings["val_region"]).resolve(image.shape).slices
            target = read_target_zyx(spec)[0][window]
            val.append(_write(folder / "val", f"val_{source}_{k}", image[window], target, "YX"))
    test = [Crop(Path(item.spec.input).stem.replace("_input", ""), Path(item.spec.input), Path(item.spec.target))
            for source in sources for item in gen.diffusion_items(source, work)]
    return val, test


def crops_for(manifest: dict, folder: Path) -> tuple[list[Crop], list[Crop]]:
    settings = (manifest.get("training") or {}).get("settings") or {}
    if settings.get("datasets"):
        return generalist_crops(manifest, folder)
    if "ISL condition B" in str((manifest.get("training") or {}).get("data", "")):
        return isl_crops(manifest, folder)
    raise SystemExit(f"{manifest['id']}: this script knows the validation and test data of the ISL and generalist "
                     "models only.")


# --- sampling and figures ----------------------------------------------------------------------
def unscaled(package: Any) -> Any:
    """``package`` with its manifest's variance scale left out: the samples' own spread at every step count."""
    manifest = package.manifest
    return replace(package, manifest=replace(manifest, diffusion=replace(manifest.diffusion, variance_scale=None)))


def sample(engine: Any, crop: Crop, steps: int, seed: int, samples: int, zscore: bool) -> dict[str, np.ndarray]:
    """Mean, variance and the target in the same units, as ``training.evaluate`` compares them: the
    stain's where the model knows them and the crops are of its one stain (the ISL models); z-scores
    with ``zscore`` (the generalist: each source's stain has its own camera, dye and bit depth)."""
    from labelfree_app.core.engine import PredictSettings
    from labelfree_app.core.events import PredictionResult
    from labelfree_app.training import PairSpec
    from labelfree_app.training.datasets import normalize_target, read_input_image, read_target_zyx

    spec = PairSpec(input=str(crop.input), target=str(crop.target))
    zscore = zscore or not (engine.manifest.get("normalization") or {}).get("output")
    settings = PredictSettings(samples=samples, steps=steps, seed=seed, device="cpu",
                               units="zscore" if zscore else None)
    result = next(e for e in engine.run(read_input_image(spec), settings) if isinstance(e, PredictionResult))
    target = read_target_zyx(spec)
    if zscore:
        target = normalize_target(target)
    return {"mean": np.asarray(result.prediction[0, 0]), "variance": np.asarray(result.variance[0, 0]),
            "target": np.asarray(target[0])}


def figures(run: dict[str, np.ndarray], scale: float = 1.0) -> dict[str, float]:
    from labelfree_app.core.metrics import pearson_r
    from labelfree_app.core.trust import output_features
    from labelfree_app.training.calibration import uncertainty_calibration

    variance = run["variance"] * scale * scale
    cal = uncertainty_calibration(run["mean"], variance, run["target"])
    return {"within_1sigma": cal.within_1sigma, "within_2sigma": cal.within_2sigma,
            "std_error_spearman": cal.std_error_spearman, "pearson_r": float(pearson_r(run["mean"], run["target"])),
            "explained_r": float(output_features(run["mean"], variance)["explained_r"])}


def mean_figures(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.nanmean([r[k] for r in rows])) for k in FIGURES}


def z_scores(runs: list[dict[str, np.ndarray]]) -> np.ndarray:
    """|error| / std of every pixel of ``runs``, pooled and sorted."""
    parts = [np.abs(r["target"] - r["mean"]) / np.sqrt(np.maximum(r["variance"], 1e-20)) for r in runs]
    return np.sort(np.concatenate([p.ravel() for p in parts]).astype(np.float64))


def within(z_sorted: np.ndarray, k: float) -> float:
    return float(np.searchsorted(z_sorted, k, side="right") / z_sorted.size)


def fit_scale(reference: list[dict[str, np.ndarray]], few: list[dict[str, np.ndarray]]) -> tuple[float, dict]:
    """The std factor s for ``few`` whose pooled within-1σ / within-2σ come closest to ``reference``'s."""
    ref, z = z_scores(reference), z_scores(few)
    w1, w2 = within(ref, 1.0), within(ref, 2.0)
    losses = [(within(z, s) - w1) ** 2 + (within(z, 2 * s) - w2) ** 2 for s in GRID]
    s = float(GRID[int(np.argmin(losses))])
    return s, {"reference": {"within_1sigma": w1, "within_2sigma": w2},
               "unscaled": {"within_1sigma": within(z, 1.0), "within_2sigma": within(z, 2.0)},
               "scaled": {"within_1sigma": within(z, s), "within_2sigma": within(z, 2 * s)}}


def verdict(held: dict[str, dict[str, float]], args: argparse.Namespace) -> tuple[bool, list[str]]:
    """Whether the scaled few-step figures hold against the reference's, and every reason they do not."""
    ref, new = held["reference"], held["scaled"]
    why = []
    for key in ("within_1sigma", "within_2sigma"):
        if abs(new[key] - ref[key]) > args.tolerance:
            why.append(f"{key} {new[key]:.3f} vs {ref[key]:.3f} (more than {args.tolerance} apart)")
    if new["std_error_spearman"] < ref["std_error_spearman"] - args.spearman_drop:
        why.append(f"Spearman {new['std_error_spearman']:.3f} vs {ref['std_error_spearman']:.3f} "
                   f"(more than {args.spearman_drop} lower)")
    if new["pearson_r"] < ref["pearson_r"] - args.r_drop:
        why.append(f"Pearson r {new['pearson_r']:.3f} vs {ref['pearson_r']:.3f} (more than {args.r_drop} lower)")
    return not why, why


def rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    return value


# --- one model ---------------------------------------------------------------------------------
def calibrate(model: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from labelfree_app.core.engine import PredictionEngine
    from labelfree_app.models.package import load_package

    folder = MODELS / model
    data = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    package = unscaled(load_package(folder))
    sampler = package.manifest.diffusion.sampler
    engine = PredictionEngine(package, device="cpu")
    val, test = crops_for(data, tmp / model)
    zscore = bool(((data.get("training") or {}).get("settings") or {}).get("datasets"))  # several sources
    print(f"{model}: {len(val)} validation crops, {len(test)} test crops, sampler {sampler}, "
          f"{args.reference_steps} vs {args.steps} steps, {args.samples} samples, seeds {args.seeds}", flush=True)
    runs: dict[str, dict[int, list[dict[str, np.ndarray]]]] = {"val": {}, "test": {}}
    start = time.perf_counter()
    for part, items in (("val", val), ("test", test)):
        for steps in (args.reference_steps, args.steps):
            runs[part][steps] = [sample(engine, crop, steps, seed, args.samples, zscore)
                                 for crop in items for seed in args.seeds]
            print(f"  {part} at {steps} steps: {time.perf_counter() - start:.0f} s", flush=True)
    scale, fit = fit_scale(runs["val"][args.reference_steps], runs["val"][args.steps])
    held = {"reference": mean_figures([figures(r) for r in runs["test"][args.reference_steps]]),
            "unscaled": mean_figures([figures(r) for r in runs["test"][args.steps]]),
            "scaled": mean_figures([figures(r, scale) for r in runs["test"][args.steps]])}
    holds, why = verdict(held, args)
    names = [c.name for c in test]
    print(f"  scale {scale:.3f}; validation within-1σ/2σ: 25 steps {fit['reference']['within_1sigma']:.3f}/"
          f"{fit['reference']['within_2sigma']:.3f}, {args.steps} unscaled {fit['unscaled']['within_1sigma']:.3f}/"
          f"{fit['unscaled']['within_2sigma']:.3f}, scaled {fit['scaled']['within_1sigma']:.3f}/"
          f"{fit['scaled']['within_2sigma']:.3f}")
    print(f"  held-out ({', '.join(names)}):  {'  '.join(f'{k:>18s}' for k in FIGURES)}")
    for name, row in held.items():
        print(f"  {name:>10s}: " + "  ".join(f"{row[k]:18.4f}" for k in FIGURES))
    print(f"  {'holds' if holds else 'does not hold: ' + '; '.join(why)}", flush=True)
    record = {
        "steps": args.steps, "sampler": sampler, "eta": float(package.manifest.diffusion.eta), "scale": round(scale, 3),
        "reference_steps": args.reference_steps,
        "fitted_on": (f"{len(val)} validation crops ({', '.join(c.name for c in val)}), {args.samples} samples, "
                      f"seeds {args.seeds}: the std factor whose pooled within-1σ and within-2σ come closest to "
                      f"{args.reference_steps} steps' (least squares on the two shares, grid 0.001)"),
        "figures": rounded({
            "validation": fit,
            "held_out": {**held, "crops": names, "samples": args.samples, "seeds": list(args.seeds),
                         "note": "means over the crops and seeds; reference = the reference steps, unscaled / "
                                 "scaled = the few steps without / with the scale"},
            "holds": holds,
            "rule": (f"within-1σ and within-2σ within {args.tolerance} of the reference steps', Spearman(std, error) "
                     f"at most {args.spearman_drop} lower, Pearson r at most {args.r_drop} lower (held-out crops)"),
            "default_steps": args.steps if holds else args.reference_steps,
            "why_not": why,
        }),
    }
    if not args.dry_run:
        write_manifest(folder, data, record, holds)
    return record


def write_manifest(folder: Path, data: dict, record: dict, holds: bool) -> None:
    """The manifest with ``diffusion.variance_scale`` and the default steps the verdict allows (validated first)."""
    from labelfree_app.io.atomic import atomic_write_bytes
    from labelfree_app.models.manifest import Manifest

    data["diffusion"]["variance_scale"] = record
    data["diffusion"]["steps"] = record["steps"] if holds else record["reference_steps"]
    Manifest.from_dict(data, source=folder / "manifest.json")
    atomic_write_bytes(folder / "manifest.json", (json.dumps(data, indent=2) + "\n").encode("utf-8"))
    print(f"  wrote {folder / 'manifest.json'}: default steps {data['diffusion']['steps']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="bundled diffusion model ids (resources/models/ID)")
    parser.add_argument("--steps", type=int, default=10, help="the few steps to calibrate (default 10)")
    parser.add_argument("--reference-steps", type=int, default=25, help="the calibrated reference (default 25)")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--tolerance", type=float, default=0.02, help="within-1σ / within-2σ: the largest gap")
    parser.add_argument("--spearman-drop", type=float, default=0.03)
    parser.add_argument("--r-drop", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for the networks (default 1)")
    parser.add_argument("--dry-run", action="store_true", help="print the figures, leave the manifests alone")
    parser.add_argument("--json", type=Path, help="also write every model's record here")
    args = parser.parse_args(argv)
    from labelfree_app.core.threads import set_cpu_threads

    set_cpu_threads(args.threads)
    records = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            records[model] = calibrate(model, args, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
