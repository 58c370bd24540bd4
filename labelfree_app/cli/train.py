"""`labelfree train` and `labelfree evaluate`: paired images in, a model package or a score report out."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from labelfree_app.cli.exit_codes import EXIT_INTERRUPTED


def _pairs_from_args(args: argparse.Namespace, *, required: bool = True) -> tuple[Any, ...]:
    from labelfree_app.training.pair_sources import pairs_from_sources

    return pairs_from_sources(pairs_csv=args.pairs, input_dir=args.input_dir, target_dir=args.target_dir,
                              multichannel=args.multichannel, input=args.input, target=args.target,
                              input_channel=args.input_channel, target_channel=args.target_channel,
                              required=required)


def _add_pair_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("paired images (one of)")
    g.add_argument("--pairs", help="CSV with 'input' and 'target' columns (optional channel columns)")
    g.add_argument("--input-dir", help="folder of inputs, matched by file name with --target-dir")
    g.add_argument("--target-dir", help="folder of targets")
    g.add_argument("--multichannel", nargs="+", help="files holding both the input and the target channel")
    g.add_argument("--input", help="one input: a file or a glob of per-plane files (a z-stack)")
    g.add_argument("--target", help="the target of --input")
    g.add_argument("--input-channel", help="input channel name or index in multi-channel files")
    g.add_argument("--target-channel", help="target channel name or index in multi-channel files")


def _above_zero(text: str) -> float:
    """An argparse type: a finite number above 0 (a learning rate, a time budget)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a number, not '{text}'") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"takes a finite number above 0, not '{text}'")
    return value


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number of 1 or more (steps, an interval in steps)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a whole number, not '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"takes a whole number of 1 or more, not '{text}'")
    return value


def _channel(value: str | None) -> str | int | None:
    """A channel option as given: a name or an index (``io.channels.parse_channel``)."""
    from labelfree_app.io.channels import parse_channel

    return parse_channel(value)


def cmd_train(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from labelfree_app.cli.interrupts import deferred_interrupts
    from labelfree_app.core.drive import drive
    from labelfree_app.training.checkpoint import PREFIX as CHECKPOINT_PREFIX
    from labelfree_app.training.checkpoint import list_checkpoints
    from labelfree_app.training import (DiffusionSettings, StepDone, TrainConfig, TrainFinished, TrainStarted,
                                        UNetSettings, ValidationDone, run_training)
    from labelfree_app.training.config import MICROSCOPE_AUGMENT, AugmentSettings

    args.input_channel, args.target_channel = _channel(args.input_channel), _channel(args.target_channel)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    _check_destination(out)
    pairs = _pairs_from_args(args)
    config = TrainConfig(
        pairs=pairs, out_dir=out, model_type=args.model_type, dims=args.dims, val_region=args.val_region,
        patch_shape=tuple(args.patch) if args.patch else ((128, 128) if args.dims == 2 else (32, 64, 64)),
        batch_size=args.batch_size, max_steps=args.max_steps, max_minutes=args.max_minutes, lr=args.lr,
        foreground_weight=args.foreground_weight, intensity_jitter=args.intensity_jitter, seed=args.seed,
        device=args.device,
        val_every=args.val_every, checkpoint_every=args.checkpoint_every, resume=args.resume,
        overwrite=args.overwrite, unet=UNetSettings(depth=args.depth, base_channels=args.base_channels,
                                                    loss=args.loss),
        diffusion=DiffusionSettings(base_channels=args.base_channels, mean_model=args.mean_model),
        model_id=args.id, name=args.name or args.id or out.name, target_name=args.target_name,
        input_modality=args.modality, description=args.description or "", init_from=args.init_from,
        early_stop_patience=args.early_stop, augmentation=MICROSCOPE_AUGMENT if args.augment == "microscope"
        else AugmentSettings(), augment=args.augment != "none",
        license=args.license or "unspecified", attribution=args.attribution or "",
    )
    config.check()  # the settings and the model id, before any image is read
    work = config.resolved_work_dir
    _check_destination(work)
    _check_resume(args, out, work)
    bar: Any = None

    def show(event: object) -> None:
        nonlocal bar
        interrupt.check()  # a stop asked for by Ctrl-C or SIGTERM: close the run here, at a step boundary
        if isinstance(event, TrainStarted):
            bar = tqdm(total=event.max_steps, initial=event.start_step, desc="training", unit="step")
            tqdm.write(f"device {event.device}, {event.train_pairs} pair(s), {event.parameters:,} parameters; "
                       f"work files in {event.work_dir}")
        elif isinstance(event, StepDone) and bar is not None:
            bar.n = event.step
            bar.set_postfix(loss=f"{event.loss:.4f}", refresh=False)
            bar.refresh()
        elif isinstance(event, ValidationDone):
            tqdm.write(f"step {event.step}: validation r = {event.val_r:.4f}" + (" (best)" if event.is_best else ""))
        elif isinstance(event, TrainFinished):
            tqdm.write(f"finished ({event.stop_reason}) after {event.steps} steps, {event.seconds:.0f} s; "
                       f"{event.summary()}")

    try:
        with deferred_interrupts("Stopping after this step; a checkpoint is being saved (press Ctrl-C again to "
                                 "stop at once).") as interrupt:
            result = drive(run_training(config), show)
    except KeyboardInterrupt:  # drive closed the run, which checkpoints the current step
        if bar is not None:
            bar.close()
        saved = list_checkpoints(work / "checkpoints")
        if saved:
            step = int(saved[-1].name[len(CHECKPOINT_PREFIX):])
            print(f"Interrupted: a checkpoint of step {step} is in {saved[-1].parent}; run the same command with "
                  "--resume to continue.", file=sys.stderr)
        else:
            print("Interrupted before the first training step; nothing was saved, so run the command again "
                  "without --resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if bar is not None:
            bar.close()
    print(result)
    print(f"Install it with: labelfree models install {result}")
    return 0


def _check_destination(folder: Path) -> None:
    """The output (or work) folder must be a folder or not exist yet: a file there is one sentence, up front."""
    from labelfree_app.errors import TrainingDataError

    if folder.exists() and not folder.is_dir():
        raise TrainingDataError(f"{folder} is a file, not a folder; give --out a folder name (new or empty) for the "
                                "model package.", path=folder)


def _check_resume(args: argparse.Namespace, out: Path, work: Path) -> None:
    """``--resume`` needs a checkpoint, and never replaces a finished model in ``out`` without ``--overwrite``."""
    from labelfree_app.errors import TrainingDataError
    from labelfree_app.training.checkpoint import list_checkpoints

    if not args.resume:
        return
    if not list_checkpoints(work / "checkpoints"):
        raise TrainingDataError(f"There is no checkpoint to resume in {work}; leave out --resume to start a new "
                                "run.", path=work)
    if not args.overwrite and (out / "manifest.json").is_file():
        raise TrainingDataError(f"The output folder {out} already holds a finished model, which resuming would "
                                "replace; add --overwrite to go on training into it.", path=out)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from labelfree_app.models.registry import ModelRegistry
    from labelfree_app.training import evaluate

    args.input_channel, args.target_channel = _channel(args.input_channel), _channel(args.target_channel)
    package = ModelRegistry().resolve(args.model)
    report = evaluate(package, _pairs_from_args(args), region=args.region, device=args.device,
                      samples=args.samples, steps=args.steps, tta=args.tta, seed=args.seed, units=args.units)
    print(report.to_table())
    if args.json:
        Path(args.json).write_text(report.to_json())
        print(f"JSON written to {args.json}")
    return 0


def register(sub: Any) -> None:
    """Add the training commands to the `labelfree` subcommand parser."""
    t = sub.add_parser("train", help="train a model on paired transmitted-light / fluorescence images")
    _add_pair_options(t)
    t.add_argument("--model-type", choices=["unet", "diffusion"], default="unet")
    t.add_argument("--out", required=True, help="folder for the model package")
    t.add_argument("--id", help="model id (default: the folder name)")
    t.add_argument("--name", help="display name")
    t.add_argument("--target-name", default="fluorescence", help='what the model predicts, e.g. "DNA (Hoechst)"')
    t.add_argument("--modality", default="bright-field", help="input modality")
    t.add_argument("--description")
    t.add_argument("--license", help="SPDX license of the training data, e.g. GPL-3.0-only (a model fine-tuned "
                   "with --init-from also carries its parent's terms on its card)")
    t.add_argument("--attribution", help="where the training data come from and whom to credit")
    t.add_argument("--dims", type=int, choices=[2, 3], default=2)
    t.add_argument("--val-region", help="validation region y0:y1,x0:x1 held out of every training image")
    t.add_argument("--max-steps", type=_at_least_one, default=2000)
    t.add_argument("--max-minutes", type=_above_zero, help="wall-clock budget in minutes")
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace an earlier run's package and work files")
    t.add_argument("--patch", type=int, nargs="+", help="patch shape (Y X or Z Y X)")
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=_above_zero, help="learning rate")
    t.add_argument("--depth", type=int, default=4, help="U-Net depth")
    t.add_argument("--base-channels", type=int, default=32, help="network width")
    t.add_argument("--loss", choices=["mse", "l1"], default="mse")
    t.add_argument("--foreground-weight", type=float, default=0.0, help="0..1 share of patches drawn on foreground")
    t.add_argument("--intensity-jitter", type=float, default=0.0,
                   help="0..1: random brightness/contrast change of the input, for robustness to illumination")
    t.add_argument("--mean-model", metavar="UNET_PACKAGE",
                   help="diffusion: sample the residual around this trained U-Net's prediction (CorrDiff-style)")
    t.add_argument("--init-from", metavar="MODEL",
                   help="fine-tune: start from this model (installed id or package path): its weights, size and "
                        "normalization, a lower learning rate, a short warm-up and early stopping")
    t.add_argument("--early-stop", type=int, default=0, metavar="N",
                   help="stop after N validations without a better r (default: 0 = never; 4 when fine-tuning)")
    t.add_argument("--augment", choices=["flips", "microscope", "none"], default="flips",
                   help="flips: flips and rotations; microscope: also gamma, defocus blur, noise and zoom, "
                        "for a model meant for other microscopes")
    t.add_argument("--val-every", type=_at_least_one, default=250, help="validate every N steps")
    t.add_argument("--checkpoint-every", type=int, default=500)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--threads", type=int, help="CPU threads for torch")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="score a model on paired images: Pearson r, NRMSE, SSIM, calibration")
    _add_pair_options(e)
    e.add_argument("--model", required=True, help="model id or package path")
    e.add_argument("--region", help="score only this region y0:y1,x0:x1 (e.g. the held-out test region)")
    e.add_argument("--samples", type=int)
    e.add_argument("--steps", type=int)
    e.add_argument("--tta", action="store_true")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--units", choices=["stain", "zscore"],
                   help="compare in z-scores (prediction and target each z-scored), or in the stain's units "
                        "(the default where the model knows them); z-scores for a stain from another lab")
    e.add_argument("--device", default="auto")
    e.add_argument("--json", help="also write the report as JSON to this file")
    e.set_defaults(func=cmd_evaluate)
