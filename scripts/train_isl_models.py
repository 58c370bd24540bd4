"""Train the bundled models on the "In silico labeling" condition-B field and score them honestly.

    python scripts/train_isl_models.py --target DAPI --model-type unet --minutes 25

Data: ../shared/data/isl_condition_b (Christiansen et al., Cell 2018; Apache-2.0). The input is the
13-plane phase-contrast z-stack used as 13 channels of a 2D model. The bottom-right quadrant
(rows 512-1023, columns 512-1023) is the test region and is never trained on: training uses the
top half and the bottom-left quadrant, with a validation strip held out of each for picking the
best step. The final metrics are measured on the test quadrant and written into the manifest.
The data itself is never copied into the repository.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labelfree_app.io import read_image, read_plane_series, write_image  # noqa: E402
from labelfree_app.models.package import load_package, save_package  # noqa: E402
from labelfree_app.training.config import MICROSCOPE_AUGMENT, AugmentSettings  # noqa: E402
from labelfree_app.training import (DiffusionSettings, PairSpec, TrainConfig, UNetSettings, evaluate,  # noqa: E402
                                    linear_baseline, train)

DATA = ROOT.parent / "shared" / "data" / "isl_condition_b"
TEST_REGION = "512:1024,512:1024"
VAL_REGION = "256:512,256:512"  # of each training crop: held out to pick the best step
TARGETS = {
    "DAPI": ("depth_computation-MAXPROJECT_DAPI_CONFOCAL.png", "DNA (DAPI)", 0.5),
    "MAP2": ("depth_computation-MAXPROJECT_MAP2_CONFOCAL.png", "MAP2 (dendrites, somata)", 0.3),
}
AUGMENTS = {"none": AugmentSettings(), "microscope": MICROSCOPE_AUGMENT,
            "mild": AugmentSettings(gamma=0.2, blur_sigma=0.7, noise=0.1, scale=(0.85, 1.18))}
LICENSE = "Apache-2.0"
ATTRIBUTION = ("Training data: 'In silico labeling' condition B (Christiansen et al., Cell 2018, "
               "Finkbeiner lab), Apache-2.0.")


def crops(folder: Path, target_file: str) -> tuple[PairSpec, ...]:
    """Training crops that leave out the test quadrant: the top half and the bottom-left quadrant."""
    stack = np.asarray(read_plane_series(str(DATA / "z_depth-*_PHASE_CONTRAST.png")).data[0])  # Z, Y, X
    target = np.asarray(read_image(DATA / target_file).data[0, 0])
    pairs = []
    for name, (ys, xs) in {"top": (slice(0, 512), slice(0, 1024)), "bottom_left": (slice(512, 1024), slice(0, 512))}.items():
        inp, tgt = folder / f"{name}_input.tif", folder / f"{name}_target.tif"
        write_image(inp, stack[:, ys, xs], "ZYX")
        write_image(tgt, target[ys, xs], "YX")
        pairs.append(PairSpec(input=str(inp), target=str(tgt)))
    return tuple(pairs)


def full_pair(target_file: str) -> PairSpec:
    return PairSpec(input=str(DATA / "z_depth-*_PHASE_CONTRAST.png"), target=str(DATA / target_file))


def record_metrics(package_dir: Path, metrics: dict) -> None:
    """Rewrite the manifest with the measured test metrics (weights unchanged); the training's own
    validation metrics (the best step's Pearson r on the held-out strips) stay under "validation"."""
    package = load_package(package_dir)
    manifest = package.manifest.to_dict()
    previous = manifest.get("metrics") or {}
    manifest["metrics"] = {**metrics, "validation": previous.get("validation", previous)}
    state = package.state_dict()
    tmp = package_dir.with_name(package_dir.name + ".new")
    save_package(tmp, manifest, state, overwrite=True)
    shutil.rmtree(package_dir)
    tmp.rename(package_dir)


def record_units(package_dir: Path, pairs: tuple[PairSpec, ...]) -> None:
    """Add the training targets' intensities (stain units) to a package trained before they were recorded."""
    from labelfree_app.training.stain_units import target_units

    units = target_units(pairs)
    package = load_package(package_dir)
    manifest = package.manifest.to_dict()
    manifest["normalization"]["output"] = {"method": "zscore", "params": {"mean": units["mean"], "std": units["std"]}}
    manifest["output"]["dtype"] = units["dtype"]
    target_norm = manifest["training"]["settings"].setdefault("target_normalization", {})
    target_norm["stain_units"] = units
    manifest["description"] = manifest["description"].replace("Outputs are in z-score units of the target.", "")
    tmp = package_dir.with_name(package_dir.name + ".new")
    save_package(tmp, manifest, package.state_dict(), overwrite=True)
    shutil.rmtree(package_dir)
    tmp.rename(package_dir)
    print("stain units:", units)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", choices=sorted(TARGETS), default="DAPI")
    parser.add_argument("--model-type", choices=["unet", "diffusion"], default="unet")
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--max-steps", type=int, default=3000, help="the cosine schedule spans this many steps")
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--out", type=Path, help="package folder (default resources/models/isl-<target>-<type>)")
    parser.add_argument("--evaluate-only", action="store_true")
    parser.add_argument("--record-units", action="store_true",
                        help="record the training targets' stain units in an existing package (weights unchanged), "
                             "then evaluate")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --work-dir")
    parser.add_argument("--work-dir", type=Path, help="checkpoints and log (default: a temp folder)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--lr", type=float, help="learning rate (default: the training loop's)")
    parser.add_argument("--intensity-jitter", type=float, default=0.0, help="input brightness/contrast jitter")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--mean-model", type=Path,
                        help="diffusion: a trained U-Net package; the diffusion model samples the residual around it")
    parser.add_argument("--loss", choices=["mse", "l1"], default="mse", help="U-Net loss")
    parser.add_argument("--init-from", help="fine-tune from this model (id or package path), e.g. lf-nuclei-2d: "
                                            "a single-plane model's first layer is spread over the 13 planes")
    parser.add_argument("--early-stop", type=int, default=0, help="validations without improvement before stopping")
    parser.add_argument("--augment", choices=sorted(AUGMENTS), default="none",
                        help="input augmentation beyond flips/rotations: 'mild' (same microscope) or 'microscope'")
    parser.add_argument("--patch", type=int, default=128, help="square training patch side in pixels")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--ema", type=float, default=0.0, help="U-Net weight averaging decay (0: off)")
    parser.add_argument("--val-every", type=int, default=200)
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"The ISL data is not at {DATA}; nothing to train on.", file=sys.stderr)
        return 1
    target_file, target_name, fg = TARGETS[args.target]
    model_id = f"isl-{args.target.lower()}-{args.model_type}"
    out = args.out or ROOT / "resources" / "models" / model_id
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        crop_dir = (args.work_dir or Path(tmp)) / "crops"
        crop_dir.mkdir(parents=True, exist_ok=True)
        if args.record_units:
            record_units(out, crops(crop_dir, target_file))
        elif not args.evaluate_only:
            common = dict(
                pairs=crops(crop_dir, target_file), out_dir=out, val_region=VAL_REGION,
                model_id=model_id, target_name=target_name, input_modality="phase contrast (13-plane z-stack)",
                license=LICENSE, attribution=ATTRIBUTION, foreground_weight=fg, max_minutes=args.minutes,
                max_steps=args.max_steps, lr=args.lr, intensity_jitter=args.intensity_jitter,
                weight_decay=args.weight_decay, overwrite=not args.resume, resume=args.resume, device="auto",
                init_from=args.init_from, early_stop_patience=args.early_stop,
                augmentation=AUGMENTS[args.augment],
                work_dir=args.work_dir or Path(tmp) / "work",
                data_description=("ISL condition B, 13-plane phase-contrast z-stack -> " + args.target +
                                  "; trained on all but the bottom-right test quadrant " + TEST_REGION),
            )
            if args.model_type == "unet":
                config = TrainConfig(
                    model_type="unet", name=f"ISL {args.target} U-Net (phase z-stack)",
                    description=f"fnet-style U-Net predicting {target_name} from a 13-plane phase-contrast "
                                "z-stack of cultured neurons (ISL condition B)." + (
                                    f" Fine-tuned from {args.init_from}, a generalist single-plane model, its "
                                    "first layer spread over the 13 planes." if args.init_from else ""),
                    unet=UNetSettings(depth=4, base_channels=args.base_channels, loss=args.loss, ema_decay=args.ema),
                    patch_shape=(args.patch, args.patch), batch_size=args.batch_size, val_every=args.val_every, checkpoint_every=1000, **common)
            else:
                config = TrainConfig(
                    model_type="diffusion", name=f"ISL {args.target} diffusion (phase z-stack)",
                    description=f"Conditional diffusion model predicting {target_name} from a 13-plane "
                                "phase-contrast z-stack; the mean of several samples is the prediction and "
                                "their variance the uncertainty." + (
                                    " Residual diffusion (CorrDiff-style): a frozen U-Net "
                                    f"({args.mean_model.name}) gives the mean estimate and the denoiser samples "
                                    "the residual around it." if args.mean_model else ""),
                    diffusion=DiffusionSettings(base_channels=args.base_channels, channel_mults=(1, 2, 2),
                                                attention_levels=(), patch_size=2, sampler="dpmpp2m",
                                                sampling_steps=25, samples=8, val_samples=4, val_sampling_steps=10,
                                                val_max_shape=(128, 256),
                                                mean_model=str(args.mean_model) if args.mean_model else None),
                    patch_shape=(128, 128), batch_size=8, val_every=500, checkpoint_every=1000, **common)
            if out.exists() and not args.resume:
                shutil.rmtree(out)
            train(config, progress=lambda e: print(e, flush=True) if type(e).__name__ in
                  ("TrainStarted", "ValidationDone", "TrainFinished") else None)
        pair = full_pair(target_file)
        report = evaluate(out, [pair], region=TEST_REGION, tta=args.model_type == "unet",
                          samples=8 if args.model_type == "diffusion" else None)  # steps: the package's
        print(report.to_table())
        baseline = linear_baseline([pair], region=TEST_REGION)
        print("linear baseline:", baseline.to_table() if hasattr(baseline, "to_table") else baseline)
        row = report.to_dict()
        if args.model_type == "diffusion" and row.get("settings", {}).get("steps") is None:
            row["settings"]["steps"] = json.loads((out / "manifest.json").read_text())["diffusion"]["steps"]
        metrics = {"test_region": f"rows/cols {TEST_REGION} of ISL condition B (never trained on)",
                   "evaluation": row, "linear_baseline": baseline.to_dict() if hasattr(baseline, "to_dict")
                   else baseline}
        metrics["pearson_r"] = report.pearson_r
        record_metrics(out, metrics)
        print(json.dumps(metrics, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
