"""Test-time scale search (``--scale search``, core/scale.py) against predicting at the file's own scale,
leave-one-source-out: each source's fields predicted by the generalist's model that never saw it.

    python scripts/measure_scale_search.py [--per-source 6]   # -> build/scale/search.json, a table

Prints per source the mean Pearson r at 1× and with the search, the factors chosen, and the time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import calibrate_trust as ct  # noqa: E402
import train_generalist as gen  # noqa: E402

from labelfree_app.core.metrics import pearson_r  # noqa: E402

OUT = ROOT / "build" / "scale" / "search.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-source", type=int, default=6, help="fields per source, spread over its list")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not gen.PAIRED.is_dir():
        print(f"The data is not at {gen.DATA}; nothing to measure.", file=sys.stderr)
        return 1
    import torch

    from labelfree_app.core.engine import PredictionEngine
    from labelfree_app.core.settings import PredictSettings
    from labelfree_app.models.package import load_package
    from labelfree_app.training.datasets import read_input_image, read_target_zyx

    torch.set_num_threads(args.threads)
    rows = json.loads(OUT.read_text()) if OUT.is_file() else []
    done = {(r["source"], r["item"]) for r in rows}
    for source in gen.SOURCES:
        engine = PredictionEngine(load_package(gen.WORK / "models" / f"loso-{source}"), device="cpu")
        items = ct.source_items(source)
        for name, spec in items[:: max(1, len(items) // args.per_source)][: args.per_source]:
            if (source, name) in done:
                continue
            image, truth = read_input_image(spec), read_target_zyx(spec)[0]
            row = {"source": source, "item": name}
            for mode in ("off", "search"):
                start = time.perf_counter()
                result = engine.predict(image, PredictSettings(scale=mode))
                row[mode] = {"r": float(pearson_r(result.prediction[0, 0], truth)),
                             "seconds": time.perf_counter() - start, "factor": result.settings["scale"]["factor"],
                             "expected_r": result.trust.expected_r if result.trust else None}
            rows.append(row)
            OUT.parent.mkdir(parents=True, exist_ok=True)
            OUT.write_text(json.dumps(rows, indent=1))
            print(source, name, {m: (round(row[m]["r"], 3), row[m]["factor"]) for m in ("off", "search")}, flush=True)
    print("\n| source | fields | r at 1x | r with search | factors chosen | time x |")
    print("|---|---|---|---|---|---|")
    means = []
    for source in gen.SOURCES:
        mine = [r for r in rows if r["source"] == source]
        if not mine:
            continue
        off, found = np.mean([r["off"]["r"] for r in mine]), np.mean([r["search"]["r"] for r in mine])
        means.append((off, found))
        factors = ", ".join(f"{r['search']['factor']:g}" for r in mine)
        cost = np.mean([r["search"]["seconds"] / r["off"]["seconds"] for r in mine])
        print(f"| {source} | {len(mine)} | {off:.3f} | {found:.3f} | {factors} | {cost:.1f} |")
    if means:
        print(f"| mean | | {np.mean([m[0] for m in means]):.3f} | {np.mean([m[1] for m in means]):.3f} | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
