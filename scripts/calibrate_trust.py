"""Calibrate the expected-r estimate (core/trust.py) on predictions of sources the models never saw.

    python scripts/calibrate_trust.py all        # collect, fit, write; reruns in one command
    python scripts/calibrate_trust.py collect    # predict every calibration item -> build/trust/rows.json
    python scripts/calibrate_trust.py fit        # judge leave-one-source-out, write resources/trust_calibration.json
    python scripts/calibrate_trust.py profiles   # write each bundled model's input profile into its manifest

The calibration set (from ../shared/data, never copied into the repository):

| models | items (never trained on) |
| leave-one-source-out U-Nets of the generalist (build/generalist/models/loso-*) | every field of the held-out source |
| isl-dapi-unet, isl-map2-unet | four 256x256 crops of the ISL test quadrant |
| lf-nuclei-2d (bundled; never saw aiSEGcell) | every aiSEGcell field |
| isl-dapi-diffusion, isl-map2-diffusion | the four ISL test crops |
| lf-nuclei-2d-diffusion | 256x256 centre crops of eight aiSEGcell fields |
| leave-one-source-out diffusion models (build/generalist/models/loso-*-diffusion) | 256x256 centre crops of 12 fields of the held-out source (all where it has fewer), spread evenly |

The first bundled generalist (trained on four sources) gave the aiSEGcell rows; a bundled model that
saw aiSEGcell gives none (its earlier rows stay in rows.json).

Each item gives the features the engine computes (the same code path as ``labelfree predict``)
and the actual Pearson r with the real stain. The fit is judged leave-one-source-out: the trust
model is fitted on the other sources' items and scored on this one's.
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

import train_generalist as gen  # noqa: E402

from labelfree_app.core.metrics import pearson_r  # noqa: E402
from labelfree_app.core.normalize import Normalizer  # noqa: E402
from labelfree_app.core.trust import METHOD, InputProfile, TrustModel  # noqa: E402
from labelfree_app.io import read_image, write_image  # noqa: E402
from labelfree_app.models.manifest import Manifest  # noqa: E402
from labelfree_app.training.config import PairSpec  # noqa: E402

WORK = ROOT / "build" / "trust"
MODELS = ROOT / "resources" / "models"
OUT = ROOT / "resources" / "trust_calibration.json"
PLOT = ROOT / "docs" / "trust_calibration.png"
PROFILE_FEATURES = ("familiar_mean", "unfamiliar_share")
# The feature sets each fold may choose from (by the other sources' leave-one-source-out error, so
# that the choice is judged too). For U-Nets a first round of richer sets (spread, tail, separation,
# a flipped second look at a central crop, input figures, |mean|) fitted the other sources and
# failed on the held-out one
# (nested Spearman below 0); what carries over is the one quantity theory gives: a calibrated
# network's r is the spread of its z-scored prediction, and its mean is 0, so spread minus mean,
# within 0-1 (calibrated_r; unclipped, the paint-everywhere predictions of one source set the slope).
CANDIDATES = {
    "unet": (("calibrated_r",),),
    "unet+profile": (("calibrated_r",), ("calibrated_r", "unfamiliar_share")),
    "diffusion": (("explained_r",), ("explained_r", "pred_sep", "pred_p99")),
}
ISL_CROPS = ((512, 512), (512, 768), (768, 512), (768, 768))


# --- items ---------------------------------------------------------------------------------
def crop_pair(name: str, spec: PairSpec, box: tuple[slice, slice], *, stack: bool = False) -> PairSpec:
    """Write the crop of a pair (a whole z-stack when ``stack``) as files; the item is the crop."""
    from labelfree_app.io import read_plane_series
    from labelfree_app.training.datasets import read_input_image, read_target_zyx

    folder = WORK / "crops"
    folder.mkdir(parents=True, exist_ok=True)
    inp, tgt = folder / f"{name}_input.tif", folder / f"{name}_target.tif"
    if not inp.is_file():
        if stack:
            planes = np.asarray(read_plane_series(str(gen.ISL / "z_depth-*_PHASE_CONTRAST.png")).data[0])
            write_image(inp, planes[(slice(None), *box)], "ZYX")
        else:
            write_image(inp, np.asarray(read_input_image(spec).data[0, 0])[box], "YX")
        write_image(tgt, read_target_zyx(spec)[0][box], "YX")
    return PairSpec(input=str(inp), target=str(tgt))


def source_items(source: str) -> list[tuple[str, PairSpec]]:
    """Every field of a source (for a model that never saw it), as (item name, pair)."""
    paired = gen.PAIRED
    if source == "isl":
        dapi = str(gen.ISL / "depth_computation-MAXPROJECT_DAPI_CONFOCAL.png")
        items = []
        for z in (2, 6, 10):
            spec = PairSpec(input=str(gen.ISL / f"z_depth-{z}_PHASE_CONTRAST.png"), target=dapi)
            for qy in (0, 512):
                for qx in (0, 512):
                    name = f"isl_z{z}_{qy}_{qx}"
                    items.append((name, crop_pair(name, spec, (slice(qy, qy + 512), slice(qx, qx + 512)))))
        return items
    if source == "sephace":
        folder = paired / "sephace_bf_dapi"
        return [(f"{s}_z{z}", PairSpec(input=str(folder / f"{s}_input.tif"), target=str(folder / f"{s}_target_dapi.tif"),
                                       plane=z)) for s in ("set1", "set2") for z in range(6)]
    if source == "celldetective":
        folder = paired / "celldetective_mcf7"
        names = gen.celldetective_fields() + gen.celldetective_new_fields()
        return [(n, PairSpec(input=str(folder / f"{n}_input.tif"), target=str(folder / f"{n}_target_hoechst.tif")))
                for n in names]
    if source == "mlcp":
        folder = paired / "mlcp_jurkat_ifc"
        spec = PairSpec(input=str(folder / "exp1_G1_CP0008_input.tif"), target=str(folder / "exp1_G1_CP0008_target_dna.tif"))
        return [(f"mlcp_{qy}_{qx}", crop_pair(f"mlcp_{qy}_{qx}", spec, (slice(qy, qy + 600), slice(qx, qx + 600))))
                for qy in (0, 600) for qx in (0, 600)]
    if source == "aisegcell":
        return [(Path(p.input).name[: -len("_input.tif")], PairSpec(input=p.input, target=p.target))
                for p in gen.aisegcell_pairs(gen.aisegcell_fields())]
    raise ValueError(source)


def isl_items(target: str) -> list[tuple[str, PairSpec]]:
    file = gen.ISL / f"depth_computation-MAXPROJECT_{target}_CONFOCAL.png"
    spec = PairSpec(input=str(gen.ISL / "z_depth-0_PHASE_CONTRAST.png"), target=str(file))
    return [(f"isltest_{target}_{y}_{x}", crop_pair(f"isltest_{target}_{y}_{x}", spec,
                                                     (slice(y, y + 256), slice(x, x + 256)), stack=True))
            for y, x in ISL_CROPS]


def aisegcell_crops(count: int = 8) -> list[tuple[str, PairSpec]]:
    items = source_items("aisegcell")
    return centre_crops([items[i] for i in np.linspace(0, len(items) - 1, count).astype(int)])


def unseen_field_crops(source: str) -> list[tuple[str, PairSpec]]:
    """Fields of celldetective or sephaCe that the bundled diffusion model never trained on (its
    source was in training, these fields were not): every other one of the 10 old test fields and
    6 newer regions; set2's near-focus planes."""
    if source == "celldetective":
        unseen = set(gen.celldetective_fields()[31:]) | set(gen.celldetective_new_fields())
        return centre_crops([(n, s) for n, s in source_items(source) if n in unseen][::2])
    return centre_crops([(n, s) for n, s in source_items(source) if n.startswith("set2") and n[-1] in "1234"])


def centre_crops(chosen: list[tuple[str, PairSpec]]) -> list[tuple[str, PairSpec]]:
    out = []
    for name, spec in chosen:
        shape = read_image(spec.input).data.shape[-2:]
        y, x = shape[0] // 2 - 128, shape[1] // 2 - 128
        out.append((f"crop_{name}", crop_pair(f"crop_{name}", spec, (slice(y, y + 256), slice(x, x + 256)))))
    return out


def cases() -> list[dict]:
    """(model, family, group, items, profile sources) of the calibration set that exist here."""
    found = []
    for source in gen.SOURCES:
        package = gen.WORK / "models" / f"loso-{source}"
        if (package / "manifest.json").is_file():
            found.append(dict(model=str(package), family="unet", group=source, items=lambda s=source: source_items(s),
                              profile=profile_sources(source)))
        diffusion = gen.WORK / "models" / f"loso-{source}-diffusion"
        if (diffusion / "manifest.json").is_file():
            found.append(dict(model=str(diffusion), family="diffusion", group=source, profile=profile_sources(source),
                              items=lambda s=source: centre_crops(evenly(source_items(s), 12))))
    for target in ("DAPI", "MAP2"):
        for kind in ("unet", "diffusion"):
            found.append(dict(model=str(MODELS / f"isl-{target.lower()}-{kind}"), family=kind, group=f"isl-{target}",
                              items=lambda t=target: isl_items(t), profile=("isl", ())))
    # The first bundled generalist (four sources) never saw aiSEGcell, nor some celldetective fields and
    # sephaCe planes; its rows stay in rows.json. A bundled model trained on all five sources gives none.
    old = ("isl", "sephace", "celldetective", "mlcp")
    if not saw_aisegcell(MODELS / "lf-nuclei-2d"):
        found.append(dict(model=str(MODELS / "lf-nuclei-2d"), family="unet", group="aisegcell-bundled",
                          items=lambda: source_items("aisegcell"), profile=("generalist", old)))
    if not saw_aisegcell(MODELS / "lf-nuclei-2d-diffusion"):
        found.append(dict(model=str(MODELS / "lf-nuclei-2d-diffusion"), family="diffusion", group="aisegcell-bundled",
                          items=aisegcell_crops, profile=("generalist", old)))
        for source in ("celldetective", "sephace"):  # unseen fields of sources it saw: the diffusion's third and fourth
            found.append(dict(model=str(MODELS / "lf-nuclei-2d-diffusion"), family="diffusion",
                              group=f"{source}-unseen-fields", profile=("generalist", old),
                              items=lambda s=source: unseen_field_crops(s)))
    return found


def evenly(items: list, count: int) -> list:
    """At most ``count`` of ``items``, spread evenly over the list (sessions and regions in order)."""
    if len(items) <= count:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def profile_sources(held_out: str) -> tuple[str, tuple[str, ...]]:
    return ("generalist", tuple(x for x in gen.SOURCES if x != held_out))


def saw_aisegcell(package: Path) -> bool:
    """Whether a model's training data (as its manifest states it) included aiSEGcell."""
    manifest = json.loads((package / "manifest.json").read_text())
    return "aisegcell" in json.dumps(manifest.get("training", {})).lower()


# --- input profiles --------------------------------------------------------------------------
def profile_for(kind: str, sources: tuple[str, ...], norm: Normalizer) -> InputProfile:
    """A model's input profile as training records it (``training.input_profile.InputSample`` over its
    training inputs, normalized as the model normalizes them)."""
    from labelfree_app.training.datasets import read_input_image
    from labelfree_app.training.input_profile import InputSample

    if kind == "isl":  # the two training crops of the 13-plane stack, planes as channels
        reads = [lambda n=n: np.asarray(read_image(gen.WORK / "crops" / f"isl_{n}_input.tif").data)[0]
                 for n in ("top", "bottom_left")]
    else:
        reads = [lambda spec=spec: np.asarray(read_input_image(spec).data[0], dtype=np.float32)
                 for s in sources for spec in gen.train_pairs(s, gen.WORK)]
    sample = InputSample(len(reads), dims=2)
    for index in sorted(sample.chosen):  # only the planes the sample keeps are read
        plane = reads[index]()
        sample.add(index, norm.fit(plane).apply(plane))
    return InputProfile.from_dict(sample.trust_block()["input_profile"])


def input_normalizer(manifest: dict) -> Normalizer:
    """The model's input normalization, unfitted (as the engine applies it to each image)."""
    spec = (manifest.get("normalization") or {}).get("input") or {"method": "zscore", "params": {}}
    return Normalizer.from_dict(spec)


# --- collect ---------------------------------------------------------------------------------
def predict_item(engine, spec: PairSpec, family: str) -> tuple[dict, float, float]:
    from labelfree_app.core.settings import PredictSettings
    from labelfree_app.training.datasets import read_input_image, read_target_zyx

    image = read_input_image(spec)
    settings = (PredictSettings(samples=8, steps=25, seed=0) if family == "diffusion" else
                PredictSettings(tta=family == "unet-tta"))
    start = time.perf_counter()
    result = engine.predict(image, settings)
    seconds = time.perf_counter() - start
    truth = read_target_zyx(spec)[0]
    predicted = result.prediction[0, 0]
    return engine._trust.features, pearson_r(predicted, truth, mask=np.isfinite(predicted) & np.isfinite(truth)), seconds


def cmd_collect(args: argparse.Namespace) -> None:
    from labelfree_app.core.engine import PredictionEngine
    from labelfree_app.models.package import load_package

    path = WORK / "rows.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    done = {(r["model"], r["item"], r["family"]) for r in rows}
    profiles: dict = {}
    for case in cases():
        if args.only and args.only not in case["model"]:
            continue
        if getattr(args, "tta", False):  # the U-Nets again, each with test-time augmentation
            if case["family"] != "unet":
                continue
            case = {**case, "family": "unet-tta"}
        model = Path(case["model"]).name
        items = case["items"]()
        todo = [(n, s) for n, s in items if (model, n, case["family"]) not in done]
        if not todo:
            continue
        engine = PredictionEngine(load_package(case["model"]), device="cpu")
        key = (case["profile"][0], case["profile"][1], input_normalizer(engine.manifest))
        if key not in profiles:
            profiles[key] = profile_for(*key)
        engine.manifest["trust"] = {"input_profile": profiles[key].to_dict()}
        for name, spec in todo:
            feats, r, seconds = predict_item(engine, spec, case["family"])
            rows.append(dict(model=model, family=case["family"], group=case["group"], item=name, r=r,
                             seconds=seconds, features=feats))
            print(f"{model:28s} {name:45s} r {r:6.3f} " + " ".join(f"{k} {v:.3f}" for k, v in feats.items()), flush=True)
            WORK.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rows, indent=1))


# --- fit and judge ---------------------------------------------------------------------------
def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if len(a) > 2 else float("nan")


def source_of(row: dict) -> str:
    """The microscope an item came from: 'isl-DAPI' and 'aisegcell-bundled' count as isl and aisegcell."""
    return row["group"].split("-")[0]


def held_out_predictions(rows: list[dict], names: tuple[str, ...], extra: list[dict] = ()) -> list[float]:
    """Each item's expected r from a trust model fitted without its source (``extra`` rows join the
    fitting side of every fold, their own source's excepted)."""
    out = [0.0] * len(rows)
    for source in sorted({source_of(r) for r in rows}):
        train = [r for r in [*rows, *extra] if source_of(r) != source]
        model = TrustModel.fit([r["features"] for r in train], [r["r"] for r in train], names)
        for i, r in enumerate(rows):
            if source_of(r) == source:
                out[i] = model.expected_r(r["features"])
    return out


def select(rows: list[dict], candidates: tuple[tuple[str, ...], ...]) -> tuple[str, ...]:
    """The candidate feature set with the smallest leave-one-source-out mean absolute error."""
    if len({source_of(r) for r in rows}) < 2:
        return candidates[0]
    actual = np.array([r["r"] for r in rows])
    errors = [float(np.mean(np.abs(np.subtract(held_out_predictions(rows, names), actual)))) for names in candidates]
    return candidates[int(np.argmin(errors))]


def judge(rows: list[dict], candidates: tuple[tuple[str, ...], ...]) -> dict:
    """Nested leave-one-source-out: for each source, the feature set, the trust model AND its 'not
    trustworthy' threshold come from the other sources alone (set and threshold from their own
    leave-one-source-out predictions); then the final choice and its in-sample figures."""
    predicted, flags, picks = [0.0] * len(rows), [0.5] * len(rows), {}
    for source in sorted({source_of(r) for r in rows}):
        others = [r for r in rows if source_of(r) != source]
        names = select(others, candidates)
        picks[source] = list(names)
        several = len({source_of(r) for r in others}) > 1
        flag = choose_flag(others, held_out_predictions(others, names)) if several else 0.5
        model = TrustModel.fit([r["features"] for r in others], [r["r"] for r in others], names)
        for i, r in enumerate(rows):
            if source_of(r) == source:
                predicted[i], flags[i] = model.expected_r(r["features"]), flag
    names = select(rows, candidates)
    whole = TrustModel.fit([r["features"] for r in rows], [r["r"] for r in rows], names)
    outer = held_out_predictions(rows, names)
    final_flag = choose_flag(rows, outer)
    return {"held_out": figures(rows, predicted, flags), "predicted": predicted, "flag": final_flag,
            "names": names, "outer": outer, "fold_choices": picks,
            "in_sample": figures(rows, [whole.expected_r(r["features"]) for r in rows], [final_flag] * len(rows))}


def figures(rows: list[dict], expected: list[float], flags: list[float]) -> dict:
    actual = [r["r"] for r in rows]
    flagged = [e < f for e, f in zip(expected, flags)]
    low = [g for g, a in zip(flagged, actual) if a < 0.5]
    high = [g for g, a in zip(flagged, actual) if a >= 0.5]
    return {"fields": len(rows), "spearman": round(spearman(expected, actual), 3),
            "mean_abs_error": round(float(np.mean(np.abs(np.subtract(expected, actual)))), 3),
            "fields_below_0.5": len(low),
            "flagged_of_below_0.5": round(float(np.mean(low)), 3) if low else None,
            "flagged_of_at_least_0.5": round(float(np.mean(high)), 3) if high else None}


def choose_flag(rows: list[dict], predicted: list[float], share: float = 0.9) -> float:
    """The lowest threshold (at least 0.5) under which ``share`` of the fields with r < 0.5 fall."""
    low = sorted(p for p, r in zip(predicted, rows) if r["r"] < 0.5)
    if not low:
        return 0.5
    return float(max(0.5, low[int(np.ceil(share * len(low))) - 1] + 1e-3))


def derived(rows: list[dict]) -> list[dict]:
    """Features added after the rows were collected (the engine computes them now)."""
    for row in rows:
        row["features"].setdefault("abs_mean", abs(row["features"]["pred_mean"]))
        row["features"].setdefault("calibrated_r", min(1.0, max(0.0, row["features"]["pred_sd"]
                                                               - row["features"]["pred_mean"])))
        share = row["features"].get("explained_share")
        if share is not None:
            row["features"].setdefault("explained_r", float(np.sqrt(max(0.0, share))))
    return rows


def cmd_fit(args: argparse.Namespace) -> None:
    rows = derived(json.loads((WORK / "rows.json").read_text()))
    out: dict = {"method": METHOD, "made_by": "scripts/calibrate_trust.py", "models": {}, "figures": {}}
    for key, candidates in CANDIDATES.items():
        family = key.split("+")[0]
        chosen = [r for r in rows if r["family"] == family]
        if len(chosen) < 8:
            continue
        report = judge(chosen, candidates)
        names, flag = report["names"], report["flag"]
        residual = np.subtract([r["r"] for r in chosen], report["outer"])
        model = TrustModel.fit([r["features"] for r in chosen], [r["r"] for r in chosen], names,
                               fitted_on=f"{len(chosen)} predictions on unseen sources: "
                                         + ", ".join(sorted({r['group'] for r in chosen})))
        model = TrustModel(model.features, model.centre, model.scale, model.coef, model.intercept,
                           float(max(0.02, -np.quantile(residual, 0.1))), float(max(0.02, np.quantile(residual, 0.9))),
                           flag, model.fitted_on)
        out["models"][key] = model.to_dict()
        per_group = {}
        for group in sorted({r["group"] for r in chosen}):
            idx = [i for i, r in enumerate(chosen) if r["group"] == group]
            per_group[group] = {"fields": len(idx),
                                "actual_r": round(float(np.mean([chosen[i]["r"] for i in idx])), 3),
                                "expected_r": round(float(np.mean([report["predicted"][i] for i in idx])), 3)}
        inside = float(np.mean((residual >= -model.below) & (residual <= model.above)))
        out["figures"][key] = {"held_out_by_source": report["held_out"], "in_sample": report["in_sample"],
                               "features": list(names), "fold_choices": report["fold_choices"],
                               "flag_below": round(flag, 3), "interval_coverage_held_out": round(inside, 3),
                               "per_source": per_group}
        print(key, json.dumps(out["figures"][key], indent=1), flush=True)
        if key in ("unet+profile", "diffusion"):
            plot(chosen, report["predicted"], key, flag)
    out["figures"]["items"] = len(rows)
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"written {OUT}")


def plot(rows: list[dict], predicted: list[float], key: str, flag: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({r["group"] for r in rows})
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for i, group in enumerate(groups):
        idx = [k for k, r in enumerate(rows) if r["group"] == group]
        ax.scatter([predicted[k] for k in idx], [rows[k]["r"] for k in idx], s=18, label=group,
                   color=plt.cm.tab10(i % 10))
    ax.plot([-0.2, 1], [-0.2, 1], color="grey", lw=0.8)
    ax.axhline(0.5, color="grey", ls=":", lw=0.8)
    ax.axvline(flag, color="red", ls="--", lw=0.8, label=f"'not trustworthy' below {flag:.2f}")
    ax.set_xlabel("expected r (fitted without this source)")
    ax.set_ylabel("actual r with the real stain")
    ax.set_title(f"Trust calibration ({key}), leave one source out")
    ax.set_xlim(-0.2, 1)
    ax.set_ylim(-0.2, 1)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    name = PLOT if key == "unet+profile" else PLOT.with_name(f"trust_calibration_{key.replace('+', '_')}.png")
    ax.set_xlabel("expected r (fitted without this source)")
    fig.savefig(name, dpi=110)
    print(f"plot: {name}")


def cmd_profiles(args: argparse.Namespace) -> None:
    """Write the input profile of each bundled model into its manifest (weights untouched)."""
    targets = {name: ("generalist", gen.SOURCES if saw_aisegcell(MODELS / name) else gen.SOURCES[:4])
               for name in ("lf-nuclei-2d", "lf-nuclei-2d-diffusion")}
    targets.update({name: ("isl", ()) for name in ("isl-dapi-unet", "isl-map2-unet", "isl-dapi-diffusion",
                                                   "isl-map2-diffusion")})
    cache: dict = {}
    for name, (kind, sources) in targets.items():
        path = MODELS / name / "manifest.json"
        manifest = json.loads(path.read_text())
        key = (kind, sources, input_normalizer(manifest))
        if key not in cache:
            cache[key] = profile_for(*key)
        trust = {**(manifest.get("trust") or {}), "input_profile": cache[key].to_dict(), "method": METHOD}
        ordered = Manifest.from_dict({**manifest, "trust": trust}, source=path).to_dict()
        path.write_text(json.dumps(ordered, indent=2) + "\n")
        print(f"profile written to {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("collect")
    p.add_argument("--only", default="", help="only models whose path contains this")
    p.add_argument("--tta", action="store_true", help="the U-Net items again, predicted with test-time augmentation")
    sub.add_parser("fit")
    sub.add_parser("profiles")
    p = sub.add_parser("all")
    p.add_argument("--only", default="")
    args = parser.parse_args()
    if not gen.PAIRED.is_dir():
        print(f"The data is not at {gen.DATA}; nothing to calibrate on.", file=sys.stderr)
        return 1
    import torch

    torch.set_num_threads(args.threads)
    if args.command in ("collect", "all"):
        cmd_collect(args)
    if args.command in ("fit", "all"):
        cmd_fit(args)
    if args.command in ("profiles", "all"):
        cmd_profiles(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
