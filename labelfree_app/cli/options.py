"""The prediction options `predict` and `batch` share, what they become (settings, I/O options), and
the lines both print about a prediction's reliability.

Choices and defaults come from ``core.settings.TABLE``, so the command line and the app agree.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

RGB_CHOICES = {"luminance": "luminance", "red": 0, "green": 1, "blue": 2}


def add_predict_options(p: argparse.ArgumentParser, *, many_models: bool = False) -> None:
    """The prediction options of `predict` and `batch`; choices and defaults from ``core.settings.TABLE``."""
    from labelfree_app.core.settings import TABLE

    if many_models:
        p.add_argument("--model", "-m", action="append", help="model id or package folder; repeat for several "
                       "(default: the default model)")
    else:
        p.add_argument("--model", "-m", help="model id (default: the default model)")
    p.add_argument("--channel", "-c", help="transmitted-light channel, by name or index (default: found by name)")
    p.add_argument("--rgb", choices=sorted(RGB_CHOICES), help="an RGB input: convert it to grayscale "
                   "(luminance) or take one colour (default: refuse RGB images)")
    p.add_argument("--device", default=TABLE["device"].default, help="auto (cuda → mps → cpu), cuda, mps or cpu")
    p.add_argument("--samples", type=int, help="diffusion: number of samples for mean and variance")
    p.add_argument("--steps", type=int, help="diffusion: sampling steps")
    p.add_argument("--sampler", choices=TABLE["sampler"].choices, help="diffusion sampler")
    p.add_argument("--eta", type=float, help="DDIM eta (0 = deterministic)")
    p.add_argument("--seed", type=int, default=0, help="random seed (diffusion)")
    frames = TABLE["frames"]
    p.add_argument("--save-steps", type=int, nargs="?", const=frames.asked, default=frames.default, metavar="N",
                   help=f"diffusion: also write N denoising frames as a TIFF stack (default {frames.asked})")
    p.add_argument("--tta", action="store_true", help="U-Net: test-time augmentation mean and variance")
    p.add_argument("--tile", type=int, nargs="+", help="tile shape (Y X or Z Y X)")
    p.add_argument("--batch-size", type=int, help="tiles per network call")
    p.add_argument("--units", choices=TABLE["units"].choices, help="stain: the stain's own intensities (the "
                   "default where the model recorded them); zscore: the network's z-scores")
    p.add_argument("--dtype", choices=TABLE["dtype"].choices, default=TABLE["dtype"].default,
                   help="pixel type of the prediction; auto: the training targets' type in stain units, else float32")
    p.add_argument("--precision", choices=TABLE["precision"].choices, default=TABLE["precision"].default,
                   help="U-Net network arithmetic: int8 (about twice as fast on the CPU) only where the model's int8 "
                   "network was checked against float32 on held-out data; auto: int8 where it was, else fp32")
    p.add_argument("--format", choices=("ome-tiff", "ome-zarr"), default="ome-tiff", dest="out_format",
                   help="output format: OME-TIFF files or OME-Zarr folders with a pyramid (default ome-tiff)")
    p.add_argument("--position", help="an OME-Zarr plate input: the field to predict, as row/column/field "
                   "such as A/1/0")
    p.add_argument("--scale", choices=TABLE["scale"].choices, default=TABLE["scale"].default,
                   help="pixel-size: resample to the model's pixel size where the file (or --pixel-size) and the "
                        "model state theirs; search: where not, also try 0.5-2x on a central crop and predict at the "
                        "scale the model is surest of (costs about one more prediction); off: as it is")
    p.add_argument("--pixel-size", type=float, metavar="UM", help="the input's pixel size in µm, where its file "
                   "does not say")
    p.add_argument("--trust-map", action="store_true", help="also write <name>__<model-id>__trust.ome.tif: how "
                   "familiar each region of the input looks to the model (1: like its training images, near 0: "
                   "the model is guessing); 2D models that record their training inputs")


def predict_settings(args: argparse.Namespace) -> Any:
    """The `predict`/`batch` options as ``PredictSettings`` (checked; the model fills what is unset)."""
    from labelfree_app.core.settings import PredictSettings

    return PredictSettings.from_mapping({
        "channel": args.channel, "samples": args.samples, "steps": args.steps, "sampler": args.sampler,
        "eta": args.eta, "seed": args.seed, "frames": args.save_steps, "tta": args.tta, "device": args.device,
        "tile_shape": args.tile, "batch_size": args.batch_size, "units": args.units, "dtype": args.dtype,
        "scale": args.scale, "pixel_size_um": args.pixel_size,
        "precision": getattr(args, "precision", None),
    })


def io_options(args: argparse.Namespace) -> dict[str, Any]:
    """The output format, the plate position and the trust map (``BatchOptions`` fields) of `predict`/`batch`."""
    return {"format": args.out_format, "position": args.position, "trust_map": args.trust_map}


def trust_lines(label: str, row: Any, *, quiet: bool = False) -> list[str]:
    """For a finished job's ``BatchRow``: the estimate ('cells.tif: expected r 0.81 (0.70-0.90): good';
    not with ``quiet``) and, when the prediction is not trustworthy, a ``warning:`` line with the
    reason and the advice. Empty when the job made no estimate."""
    estimate = row.trust_estimate()
    if estimate is None:
        return []
    lines = [] if quiet else [f"{label}: {estimate.summary()}"]
    if not estimate.trustworthy:
        lines.append(f"warning: {label}: the prediction is not trustworthy. {estimate.reason} {estimate.advice}")
    return lines


def default_model_for(items: list[str], registry: Any) -> str:
    """Without --model: the best installed model that fits the first input (``models.fit``); said on stderr."""
    from labelfree_app.batch.plan import expand_inputs
    from labelfree_app.errors import LabelFreeError
    from labelfree_app.io import read_image
    from labelfree_app.models.fit import InputFacts

    found = expand_inputs(items)
    try:
        facts = InputFacts.of(read_image(found[0])) if found else None
    except LabelFreeError:
        facts = None  # the batch reports the unreadable file; choose as for a single plane
    model_id = registry.default_for(facts=facts).id
    print(f"model: {model_id} (the default for {facts.describe() if facts else 'a single plane'} like "
          f"{found[0].name if found else 'the inputs'}; name others with --model)", file=sys.stderr)
    return model_id
