"""Does predicting MAP2 and NFH next to DAPI help the ISL DAPI model? A paired A/B probe.

    python scripts/isl_multitask_probe.py --arm single --out build/probe/single
    python scripts/isl_multitask_probe.py --arm multi  --out build/probe/multi

Both arms are the same run (seed, steps, patches, schedule, starting weights from lf-nuclei-2d
spread over the 13 planes) except for the network's head: ``single`` predicts DAPI alone,
``multi`` predicts DAPI, MAP2 and NFH (the ISL paper's multi-task setting), the extra targets
acting as a regularizer that tells neurons from glia. Training uses the top half and the
bottom-left quadrant of ISL condition B, each normalized on its own as the product does; the
bottom-right test quadrant is never read for training. A fixed number of steps makes the A/B
independent of the machine's load. The DAPI head alone is saved as a package and scored with the
product's ``evaluate`` (with TTA) on the test quadrant, as the bundled model's card is.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from labelfree_app.core.normalize import fit_normalizer  # noqa: E402
from labelfree_app.io import read_image, read_plane_series  # noqa: E402
from labelfree_app.models.package import load_package, save_package  # noqa: E402
from labelfree_app.training import PairSpec, evaluate  # noqa: E402
from labelfree_app.training.augment import augment_pair, jitter_intensity  # noqa: E402
from labelfree_app.training.sampling import foreground_mask  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "isl_condition_b"
STAINS = ("DAPI", "MAP2", "NFH")
TEST_REGION = "512:1024,512:1024"
CROPS = {"top": (slice(0, 512), slice(0, 1024)), "bottom_left": (slice(512, 1024), slice(0, 512))}


def load_crops(stains: tuple[str, ...]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(input C,Y,X; targets K,Y,X; DAPI foreground Y,X) for each training crop, normalized per crop."""
    stack = np.asarray(read_plane_series(str(DATA / "z_depth-*_PHASE_CONTRAST.png")).data[0], dtype=np.float32)
    targets = [np.asarray(read_image(DATA / f"depth_computation-MAXPROJECT_{s}_CONFOCAL.png").data[0, 0],
                          dtype=np.float32) for s in stains]
    out = []
    for ys, xs in CROPS.values():
        source = stack[:, ys, xs]
        source = fit_normalizer(source, "percentile").apply(source).astype(np.float32)
        target = np.stack([fit_normalizer(t[ys, xs], "zscore").apply(t[ys, xs]) for t in targets]).astype(np.float32)
        out.append((source, target, foreground_mask(target[0])))
    return out


def draw(crops: list, patch: int, batch: int, rng: np.random.Generator, jitter: float) -> tuple:
    """A batch of patches: half centred on a DAPI foreground pixel, half uniform; flips, turns, jitter."""
    xs, ys = [], []
    for _ in range(batch):
        source, target, fg = crops[int(rng.integers(len(crops)))]
        h, w = target.shape[-2:]
        if rng.random() < 0.5 and fg.any():
            pts = np.flatnonzero(fg)
            cy, cx = np.unravel_index(int(pts[rng.integers(len(pts))]), fg.shape)
            y0 = int(np.clip(cy - patch // 2, 0, h - patch))
            x0 = int(np.clip(cx - patch // 2, 0, w - patch))
        else:
            y0, x0 = int(rng.integers(h - patch + 1)), int(rng.integers(w - patch + 1))
        s, t = augment_pair(source[:, y0:y0 + patch, x0:x0 + patch], target[:, y0:y0 + patch, x0:x0 + patch], rng)
        xs.append(jitter_intensity(s, rng, jitter))
        ys.append(t)
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def start_weights(network: torch.nn.Module, parent_dir: Path, planes: int) -> None:
    """lf-nuclei-2d's weights: first conv spread over the planes, its DAPI head copied to every output."""
    parent = load_package(parent_dir).state_dict()
    wanted = network.state_dict()
    for key, value in parent.items():
        shape = tuple(wanted[key].shape)
        if tuple(value.shape) == shape:
            wanted[key] = value
        elif value.ndim == 4 and value.shape[1] == 1 and shape[1] == planes:
            wanted[key] = value.repeat(1, planes, 1, 1) / planes
        elif key.startswith("head."):
            wanted[key] = value.expand(shape).clone() if value.ndim == 1 else value.repeat(shape[0], 1, 1, 1)
        else:
            raise SystemExit(f"cannot adapt {key}: {tuple(value.shape)} -> {shape}")
    network.load_state_dict(wanted)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arm", choices=["single", "multi"], required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--aux-weight", type=float, default=1.0, help="loss weight of each extra stain")
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parent", type=Path, default=ROOT / "resources" / "models" / "lf-nuclei-2d")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"The ISL data is not at {DATA}.", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    stains = STAINS if args.arm == "multi" else STAINS[:1]
    crops = load_crops(stains)
    from labelfree_app.models.unet import UNet

    kwargs = dict(dims=2, in_channels=13, out_channels=len(stains), depth=4, base_channels=args.base_channels)
    network = UNet(**kwargs)
    if args.base_channels == 16:
        start_weights(network, args.parent, 13)
    weights = torch.tensor([1.0] + [args.aux_weight] * (len(stains) - 1)).view(1, -1, 1, 1)
    optimizer = torch.optim.AdamW(network.parameters(), lr=args.lr, weight_decay=1e-4)
    warmup, floor = 50, 0.05
    started = time.monotonic()
    network.train()
    for step in range(args.steps):
        fraction = step / args.steps
        lr = args.lr * (min(1.0, (step + 1) / warmup) *
                        (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * fraction))))
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = draw(crops, 128, 8, rng, 0.3)
        loss = (((network(x) - y) ** 2) * weights).mean(dim=(0, 2, 3)).sum() / weights.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        optimizer.step()
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.4f} lr {lr:.2e} {time.monotonic() - started:.0f}s", flush=True)
    seconds = time.monotonic() - started
    state = {k: v.detach().clone() for k, v in network.state_dict().items()}
    state["head.weight"], state["head.bias"] = state["head.weight"][:1], state["head.bias"][:1]
    manifest = load_package(ROOT / "resources" / "models" / "isl-dapi-unet").manifest.to_dict()
    manifest.pop("weights", None)
    manifest["id"] = f"isl-dapi-probe-{args.arm}"
    manifest["architecture"]["kwargs"]["base_channels"] = args.base_channels
    manifest["description"] = f"Multi-task probe, arm {args.arm}: {', '.join(stains)} trained, DAPI head kept."
    manifest["training"] = {**manifest["training"], "steps": args.steps, "seconds": round(seconds, 1)}
    save_package(args.out, manifest, state, overwrite=True)
    pair = PairSpec(input=str(DATA / "z_depth-*_PHASE_CONTRAST.png"),
                    target=str(DATA / "depth_computation-MAXPROJECT_DAPI_CONFOCAL.png"))
    scores = {}
    for tta in (False, True):
        report = evaluate(args.out, [pair], region=TEST_REGION, tta=tta)
        scores["tta" if tta else "plain"] = report.pearson_r
    result = {"arm": args.arm, "steps": args.steps, "seconds": round(seconds, 1), "aux_weight": args.aux_weight,
              "seed": args.seed, "base_channels": args.base_channels, "test_r": scores}
    print(json.dumps(result), flush=True)
    (args.out / "probe.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
