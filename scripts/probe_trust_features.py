"""Probe candidate trust features on the calibration rows (build/trust/rows.json) before adding any
to core/trust.py. Each is judged as the calibration is: nested leave-one-source-out.

    python scripts/probe_trust_features.py embeddings   # the networks' own features (neural precursors)
    python scripts/probe_trust_features.py stain        # how much of r the real stain's quality decides
    python scripts/probe_trust_features.py ceiling      # the best an estimate that knew each source's mean r could do
    python scripts/probe_trust_features.py fits         # every linear fit on 1-3 of the recorded features
    python scripts/probe_trust_features.py curves       # more good predictions: fine-tuned models on unseen fields
    python scripts/probe_trust_features.py tta          # the 8 TTA looks' agreement as a sample spread
                                                        # (after: calibrate_trust.py collect --tta --only loso-)

embeddings: every field of every source through each leave-one-source-out U-Net's encoder (a 768²
centre crop, percentile-normalized as the engine does). Per position of the bottleneck (1/16) and
of the last encoder level (1/8, pooled to 1/16): the Mahalanobis distance to the positions of the
sources the model trained on; per field the familiarity (share of training positions farther), the
share beyond their 95th percentile, the log median distance, and the distance of the field's mean
embedding to its 5 nearest training fields.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import calibrate_trust as ct  # noqa: E402
import train_generalist as gen  # noqa: E402

EMBED = ct.WORK / "embed"
SIDE = 768


def unet_rows(loso_only: bool = False) -> list[dict]:
    rows = [r for r in ct.derived(json.loads((ct.WORK / "rows.json").read_text())) if r["family"] == "unet"]
    return [r for r in rows if r["model"] in {f"loso-{s}" for s in gen.SOURCES}] if loso_only else rows


def embed(model_source: str) -> dict[str, np.ndarray]:
    """Bottleneck and level-3 features of every field under loso-``model_source``."""
    import torch

    from labelfree_app.core.normalize import Normalizer
    from labelfree_app.models.package import load_package
    from labelfree_app.training.datasets import read_input_image

    dest = EMBED / f"{model_source}.npz"
    if dest.is_file():
        return dict(np.load(dest))
    package = load_package(gen.WORK / "models" / f"loso-{model_source}")
    net = package.build_network("cpu")
    norm = Normalizer.from_dict(package.manifest.to_dict()["normalization"]["input"])
    store = {}
    for source in gen.SOURCES:
        for name, spec in ct.source_items(source):
            data = np.asarray(read_input_image(spec).data[0, 0], dtype=np.float32)
            x = norm.fit(data).apply(data)
            h, w = min(SIDE, x.shape[0] // 16 * 16), min(SIDE, x.shape[1] // 16 * 16)
            y0, x0 = (x.shape[0] - h) // 2, (x.shape[1] - w) // 2
            z = torch.from_numpy(np.ascontiguousarray(x[y0:y0 + h, x0:x0 + w]))[None, None]
            with torch.no_grad():
                for level in range(net.depth):
                    z = net.encoders[level](z)
                    if level == net.depth - 1:
                        store[f"{source}|{name}|l3"] = torch.nn.functional.avg_pool2d(z, 2)[0].numpy().astype(np.float16)
                    z = net.downs[level](z)
                store[f"{source}|{name}|b"] = net.encoders[net.depth](z)[0].numpy().astype(np.float16)
    EMBED.mkdir(parents=True, exist_ok=True)
    np.savez(dest, **store)
    return store


def embedding_features(model_source: str, layer: str) -> dict[str, dict[str, float]]:
    store = embed(model_source)
    rng = np.random.default_rng(0)
    keys = [k for k in store if k.endswith("|" + layer)]

    def positions(key: str) -> np.ndarray:
        return store[key].astype(np.float32).reshape(store[key].shape[0], -1).T

    seen = [k for k in keys if k.split("|")[0] != model_source]
    ref = np.concatenate([p[rng.choice(len(p), min(200, len(p)), replace=False)] for p in map(positions, seen)])
    pooled = np.stack([positions(k).mean(0) for k in seen])
    mu, cov = ref.mean(0), np.cov(ref, rowvar=False)
    inv = np.linalg.inv(cov + np.eye(len(mu)) * 1e-3 * np.trace(cov) / len(mu))

    def distance(x: np.ndarray) -> np.ndarray:
        d = x - mu
        return np.sqrt(np.einsum("ij,jk,ik->i", d, inv, d))

    ref_d = np.sort(distance(ref))
    spread = pooled.std(0) + 1e-6
    knn_ref = np.median([np.sort(np.linalg.norm((pooled - p) / spread, axis=1))[1:6].mean() for p in pooled])
    out = {}
    for key in keys:
        if key.split("|")[0] != model_source:
            continue
        x = positions(key)
        d = distance(x)
        knn = np.sort(np.linalg.norm((pooled - x.mean(0)) / spread, axis=1))[:5].mean()
        out[key.split("|")[1]] = {"emb_fam": float(np.mean(1 - np.searchsorted(ref_d, d) / len(ref_d))),
                                  "emb_far": float(np.mean(d > np.quantile(ref_d, 0.95))),
                                  "emb_logd": float(np.log(np.median(d) / np.median(ref_d))),
                                  "emb_knn": float(np.log(knn / knn_ref))}
    return out


def within(rows: list[dict], key: str) -> dict[str, float]:
    """Spearman of a feature with r inside each group of rows."""
    groups = sorted({r["group"] for r in rows})
    return {g: round(ct.spearman([r["features"][key] for r in rows if r["group"] == g],
                                 [r["r"] for r in rows if r["group"] == g]), 2) for g in groups}


def cmd_embeddings() -> None:
    rows = unet_rows(loso_only=True)
    print(f"{len(rows)} predictions of the leave-one-source-out U-Nets")
    base = ct.judge(rows, (("calibrated_r",),))["held_out"]
    print("calibrated_r alone: held-out", base)
    for layer in ("b", "l3"):
        found = {(f"loso-{s}", item): f for s in gen.SOURCES for item, f in embedding_features(s, layer).items()}
        for r in rows:
            r["features"].update(found[(r["model"], r["item"])])
        for name in ("emb_fam", "emb_far", "emb_logd", "emb_knn"):
            held = ct.judge(rows, (("calibrated_r", name),))["held_out"]
            print(f"{layer:2s} + {name:8s} held-out Spearman {held['spearman']:.3f} MAE {held['mean_abs_error']:.3f} "
                  f"| within-source Spearman {within(rows, name)}")


def cmd_stain() -> None:
    from labelfree_app.training.datasets import read_target_zyx

    rows = unet_rows()
    specs = {n: s for source in gen.SOURCES for n, s in ct.source_items(source)}
    snr = {n: gen.nuclear_snr(read_target_zyx(s)[0]) for n, s in specs.items()}
    for r in rows:
        r["features"]["stain_snr"] = snr.get(r["item"], float("nan"))
    print("Spearman of r with the real stain's nuclear SNR, within each group:",
          {g: v for g, v in within([r for r in rows if r["item"] in snr], "stain_snr").items()})
    good = [r for r in rows if snr.get(r["item"], np.inf) >= gen.SNR_FULL_WEIGHT]
    print(f"only fields whose stain has SNR >= {gen.SNR_FULL_WEIGHT:g} ({len(good)} of {len(rows)}):",
          ct.judge(good, (("calibrated_r",),))["held_out"])


def cmd_ceiling() -> None:
    rows = unet_rows()
    actual = np.array([r["r"] for r in rows])
    means = {g: np.mean([r["r"] for r in rows if r["group"] == g]) for g in {r["group"] for r in rows}}
    oracle = np.array([means[r["group"]] for r in rows])
    print(f"each group's own mean r as the estimate ({len(rows)} U-Net predictions): Spearman "
          f"{ct.spearman(list(oracle), list(actual)):.3f}, mean abs. error {np.mean(np.abs(oracle - actual)):.3f}")


FIT_FEATURES = ("calibrated_r", "familiar_mean", "input_sd", "pred_mean", "abs_mean", "pred_p99", "pred_sd",
                "pred_sep", "unfamiliar_share", "log_unfamiliar")


def cmd_fits() -> None:
    """Every trust model on 1-3 of the features the engine records (and log unfamiliar share), judged
    nested leave-one-source-out; the ten best by held-out mean absolute error."""
    from itertools import combinations

    rows = unet_rows()
    for r in rows:
        r["features"]["log_unfamiliar"] = float(np.log(r["features"]["unfamiliar_share"] + 0.01))
    found = []
    for k in (1, 2, 3):
        for names in combinations(FIT_FEATURES, k):
            held = ct.judge(rows, (names,))["held_out"]
            found.append((held["mean_abs_error"], held["spearman"], names))
    print(f"{len(found)} feature sets over {len(rows)} U-Net predictions; best by held-out mean abs. error:")
    for error, rho, names in sorted(found)[:10]:
        print(f"  Spearman {rho:.3f}  MAE {error:.3f}  {', '.join(names)}")


def cmd_curves() -> None:
    """Predictions of the fine-tuning curve runs (from the leave-one-source-out model, and from scratch,
    10 minutes on the source's training fields) on that source's test fields, which they never trained
    on: good predictions the calibration lacks. Collected into WORK/rows_curves.json, then added to the
    training side of each fold (never to the held-out side) of the calibrated_r fit."""
    from labelfree_app.core.engine import PredictionEngine
    from labelfree_app.models.package import load_package
    from labelfree_app.training.sampling import Region

    path = ct.WORK / "rows_curves.json"
    extra = json.loads(path.read_text()) if path.is_file() else []
    done = {(r["model"], r["item"]) for r in extra}
    for source in gen.SOURCES:
        items = []
        for n, item in enumerate(gen.test_items(source, gen.WORK)):
            spec = item.spec if not item.region else ct.crop_pair(
                f"test_{source}_{n}", item.spec, tuple(Region.parse(item.region).slices[-2:]))
            items.append((f"test_{source}_{n}", spec))
        for start in ("loso", "scratch"):
            model, package = f"curve-{source}-{start}", gen.WORK / "models" / f"curve-{source}-{start}"
            todo = [(n, s) for n, s in items if (model, n) not in done]
            if not todo or not (package / "manifest.json").is_file():
                continue
            engine = PredictionEngine(load_package(package), device="cpu")
            sources = tuple(gen.SOURCES) if start == "loso" else (source,)
            profile = ct.profile_for("generalist", sources, ct.input_normalizer(engine.manifest))
            engine.manifest["trust"] = {"input_profile": profile.to_dict()}
            for name, spec in todo:
                feats, r, seconds = ct.predict_item(engine, spec, "unet")
                extra.append(dict(model=model, family="unet", group=f"{source}-{start}", item=name, r=r,
                                  seconds=seconds, features=feats))
                path.write_text(json.dumps(extra, indent=1))
    extra = ct.derived(extra)
    rows = unet_rows()
    actual = np.array([r["r"] for r in rows])
    print(f"{len(extra)} curve predictions (mean r {np.mean([r['r'] for r in extra]):.3f}) beside {len(rows)} rows")
    for label, added in (("calibration rows only", []), ("with the curve predictions", extra)):
        predicted = np.array(ct.held_out_predictions(rows, ("calibrated_r",), added))
        print(f"  {label}: held-out Spearman {ct.spearman(list(predicted), list(actual)):.3f}, "
              f"mean abs. error {np.mean(np.abs(predicted - actual)):.3f}")


def cmd_tta() -> None:
    """The leave-one-source-out U-Nets' predictions again with test-time augmentation (rows of family
    'unet-tta'): does the agreement of the 8 looks (``explained_r``, as for diffusion samples) say
    how good the prediction is? Judged nested leave-one-source-out, beside the plain runs' estimate on
    the same fields."""
    rows = ct.derived(json.loads((ct.WORK / "rows.json").read_text()))
    tta = [r for r in rows if r["family"] == "unet-tta"]
    plain = {(r["model"], r["item"]): r for r in rows if r["family"] == "unet"}
    same = [plain[(r["model"], r["item"])] for r in tta if (r["model"], r["item"]) in plain]
    print(f"{len(tta)} predictions with TTA; mean r {np.mean([r['r'] for r in same]):.3f} without, "
          f"{np.mean([r['r'] for r in tta]):.3f} with")
    print("  without TTA, calibrated_r:", ct.judge(same, (("calibrated_r",),))["held_out"])
    for names in (("calibrated_r",), ("explained_r",), ("calibrated_r", "explained_r")):
        print(f"  with TTA, {', '.join(names)}:", ct.judge(tta, (names,))["held_out"])


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    commands = {"embeddings": cmd_embeddings, "stain": cmd_stain, "ceiling": cmd_ceiling, "fits": cmd_fits,
                "curves": cmd_curves, "tta": cmd_tta}
    if command not in commands or not (ct.WORK / "rows.json").is_file():
        print(__doc__, file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    commands[command]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
