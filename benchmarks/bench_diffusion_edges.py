"""Does a single-tile diffusion image need the reflected rim around its edges? Quality with and without.

    python benchmarks/bench_diffusion_edges.py [--seeds 0 1]

The diffusion runner used to sample an image that fits one tile with a reflected rim of one halo
around it (a 512² image as a 576² tile); it now samples the image alone (``edge_margin``). This
scores both on held-out crops, same seeds: four 256² crops of the ISL test quadrant with
``isl-dapi-diffusion`` (10 steps) and the generalist's six held-out diffusion crops
(``build/generalist/crops/diff_*``, made by ``scripts/train_generalist.py report``) with
``lf-nuclei-2d-diffusion`` (25 steps), 8 samples each. It prints Pearson r, within-1σ and
Spearman(std, RMS error) per crop and the mean paired difference (without − with rim) with its
standard error. Data are read from ../shared/data; crops are written to a temp folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ISL = ROOT.parent / "shared" / "data" / "isl_condition_b"
KEYS = ("pearson_r", "within_1sigma", "std_error_spearman")


def crops(folder: Path) -> list[tuple[str, object, int]]:
    """(model id, PairSpec, steps) for every crop."""
    from labelfree_app.io import read_image, read_plane_series, write_image
    from labelfree_app.training import PairSpec

    stack = np.asarray(read_plane_series(str(ISL / "z_depth-*_PHASE_CONTRAST.png")).data[0])
    target = np.asarray(read_image(ISL / "depth_computation-MAXPROJECT_DAPI_CONFOCAL.png").data[0, 0])
    found = []
    for i, (y, x) in enumerate([(512, 512), (512, 768), (768, 512), (768, 768)]):
        inp, tgt = folder / f"isl{i}_input.tif", folder / f"isl{i}_target.tif"
        write_image(inp, np.ascontiguousarray(stack[:, y:y + 256, x:x + 256]), "ZYX")
        write_image(tgt, np.ascontiguousarray(target[y:y + 256, x:x + 256]), "YX")
        found.append(("isl-dapi-diffusion", PairSpec(input=str(inp), target=str(tgt)), 10))
    for inp in sorted((ROOT / "build" / "generalist" / "crops").glob("diff_*_input.tif")):
        tgt = inp.with_name(inp.name.replace("_input", "_target"))
        found.append(("lf-nuclei-2d-diffusion", PairSpec(input=str(inp), target=str(tgt)), 25))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    if not ISL.is_dir():
        print(f"The ISL data is not at {ISL}; nothing to score.", file=sys.stderr)
        return 1
    from labelfree_app.core import diffusion_runner
    from labelfree_app.training import evaluate

    without = diffusion_runner.edge_margin
    with_rim = lambda spatial, tile_shape, halo: tuple(halo)  # noqa: E731 - the old behaviour
    diffs: dict[str, list[float]] = {k: [] for k in KEYS}
    with tempfile.TemporaryDirectory() as tmp:
        for model, pair, steps in crops(Path(tmp)):
            for seed in args.seeds:
                rows = {}
                for name, rule in (("with rim", with_rim), ("without", without)):
                    diffusion_runner.edge_margin = rule
                    rows[name] = evaluate(ROOT / "resources" / "models" / model, [pair], samples=8, steps=steps,
                                          seed=seed).rows[0]
                diffusion_runner.edge_margin = without
                print(Path(pair.input).name, model, seed, " | ".join(
                    f"{name}: " + " ".join(f"{getattr(row, k):.3f}" for k in KEYS) for name, row in rows.items()),
                      flush=True)
                for k in KEYS:
                    diffs[k].append(getattr(rows["without"], k) - getattr(rows["with rim"], k))
    for k, values in diffs.items():
        d = np.asarray(values)
        print(f"{k}: without − with rim {d.mean():+.4f} ± {d.std(ddof=1) / np.sqrt(d.size):.4f} (n={d.size})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
