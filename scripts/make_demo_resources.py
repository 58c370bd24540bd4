"""Build the bundled demo: a synthetic input image and two small demo models trained on synthetic cells.

    python scripts/make_demo_resources.py [--minutes-unet 4] [--minutes-diffusion 10]

Writes resources/demo/demo_brightfield.ome.tif (channels: Bright-field, DNA ground truth) and the
model packages resources/models/demo-nuclei-unet and resources/models/demo-nuclei-diffusion.
The models say in their manifests that they are demos trained on synthetic data.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labelfree_app.io import write_image  # noqa: E402
from labelfree_app.synthetic import render_cells  # noqa: E402
from labelfree_app.training.config import DiffusionSettings, PairSpec, TrainConfig, UNetSettings  # noqa: E402
from labelfree_app.training.loop import train  # noqa: E402

TRAIN_SEEDS = range(100, 108)
VAL_SEED = 200
DEMO_SEED = 7
ATTRIBUTION = "LabelFree synthetic cell renderer (labelfree_app/synthetic.py)"


def write_pairs(folder: Path) -> tuple[tuple[PairSpec, ...], tuple[PairSpec, ...]]:
    pairs = []
    for seed in [*TRAIN_SEEDS, VAL_SEED]:
        cells = render_cells((512, 512), seed=seed)
        bf, dna = folder / f"bf_{seed}.tif", folder / f"dna_{seed}.tif"
        write_image(bf, cells.brightfield, "YX")
        write_image(dna, cells.nuclei, "YX")
        pairs.append(PairSpec(input=str(bf), target=str(dna)))
    return tuple(pairs[:-1]), (pairs[-1],)


def write_demo_input(path: Path) -> None:
    cells = render_cells((640, 768), seed=DEMO_SEED)
    import numpy as np

    data = np.stack([cells.brightfield, cells.nuclei])[:, None]  # C, Z, Y, X
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    write_image(path, data, "CZYX", channel_names=["Bright-field", "DNA (synthetic ground truth)"],
                pixel_size_um={"Y": 0.325, "X": 0.325},
                provenance={"content": "synthetic demo image", "renderer_seed": DEMO_SEED})


def progress(event: object) -> None:
    name = type(event).__name__
    if name in ("TrainStarted", "ValidationDone", "TrainFinished"):
        print(event, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes-unet", type=float, default=4.0)
    parser.add_argument("--minutes-diffusion", type=float, default=10.0)
    parser.add_argument("--only", choices=["input", "unet", "diffusion"])
    args = parser.parse_args()
    resources = ROOT / "resources"
    if args.only in (None, "input"):
        write_demo_input(resources / "demo" / "demo_brightfield.ome.tif")
    with tempfile.TemporaryDirectory() as tmp:
        train_pairs, val_pairs = write_pairs(Path(tmp))
        common = dict(pairs=train_pairs, val_pairs=val_pairs, target_name="DNA (Hoechst)",
                      input_modality="bright-field", license="BSD-3-Clause", attribution=ATTRIBUTION,
                      data_description="8 synthetic 512x512 fields (seeds 100-107); validation: seed 200",
                      demo=True, overwrite=True, device="cpu")
        jobs = []
        if args.only in (None, "unet"):
            jobs.append(TrainConfig(
                out_dir=resources / "models" / "demo-nuclei-unet", model_type="unet",
                model_id="demo-nuclei-unet", name="Demo nuclei U-Net (synthetic)",
                description="DEMO ONLY: a small fnet-style U-Net trained on synthetic cartoon cells. "
                            "It shows how LabelFree works; do not use it on real images.",
                unet=UNetSettings(depth=3, base_channels=16), patch_shape=(128, 128), batch_size=8,
                max_steps=100000, max_minutes=args.minutes_unet, val_every=100, checkpoint_every=500,
                work_dir=Path(tmp) / "work-unet", **common))
        if args.only in (None, "diffusion"):
            jobs.append(TrainConfig(
                out_dir=resources / "models" / "demo-nuclei-diffusion", model_type="diffusion",
                model_id="demo-nuclei-diffusion", name="Demo nuclei diffusion (synthetic)",
                description="DEMO ONLY: a small conditional diffusion model trained on synthetic cartoon "
                            "cells; several samples give a mean and a variance map. Not for real images.",
                diffusion=DiffusionSettings(base_channels=16, channel_mults=(1, 2, 2), attention_levels=(),
                                            sampler="dpmpp2m", samples=8, sampling_steps=25, val_samples=4, val_sampling_steps=10,
                                            val_max_shape=(128, 128)),
                patch_shape=(64, 64), batch_size=16, max_steps=100000, max_minutes=args.minutes_diffusion,
                val_every=400, checkpoint_every=1000, work_dir=Path(tmp) / "work-diffusion", **common))
        for config in jobs:
            if config.out_dir.exists():
                shutil.rmtree(config.out_dir)
            print(f"training {config.model_id} for {config.max_minutes} min", flush=True)
            print(train(config, progress=progress))
    return 0


if __name__ == "__main__":
    sys.exit(main())
