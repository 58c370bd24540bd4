"""Train and score the generalist single-plane nuclei model (lf-nuclei-2d) on every nuclear source.

    python scripts/train_generalist.py prepare                 # crops and splits into --work
    python scripts/train_generalist.py train --holdout none    # the bundled model (all sources)
    python scripts/train_generalist.py train --holdout mlcp    # leave-one-source-out model
    python scripts/train_generalist.py curve --source mlcp --start loso --minutes 10
    python scripts/train_generalist.py diffusion --holdout mlcp --minutes 12   # residual diffusion on loso-mlcp
    python scripts/train_generalist.py score-diffusion         # each LOSO diffusion on its held-out source
    python scripts/train_generalist.py report                  # tables (JSON + markdown) and the plot

Sources (../shared/data; read, never copied into the repository), each split into training fields
and held-out test fields (whole fields, or for a single field a part never trained on):

| source | input -> stain | train | test |
| isl | phase 13-plane z-stack -> DAPI (planes one at a time) | top half + bottom-left quadrant | bottom-right quadrant |
| sephace | bright-field 6-plane z-stack -> DAPI (every plane) | set1 | set2 |
| celldetective | bright-field -> Hoechst | 31 fields | 10 fields |
| mlcp | imaging-flow bright-field montage -> DNA | left half (450 cells) | right half (450 cells) |
| aisegcell | bright-field (8-bit, vignetted) -> nuclear marker, 11 sessions | 9 sessions (28 fields) | sessions 170601SH11, 190905WW12 (6 fields) |

celldetective's six regions from other experiments (DecExp, Jan23, NKratio) split 4 train / 2 test.
aiSEGcell fields weigh by the signal of their nuclear channel (``field_weight``): a field whose
nuclei stand less than 8 noise sigmas above the background weighs proportionally less, and one
below 2 sigmas (fig3a_190905WW12_p0013: no nuclear signal) is neither trained on nor scored.

E. coli (cytoplasm) and the embryo (unknown, very low-signal stain) are not nuclear and are left out.
Every model is scored on test fields only; a leave-one-source-out model never saw its source at all.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labelfree_app.io import read_image, write_image  # noqa: E402
from labelfree_app.training import PairSpec, TrainConfig, UNetSettings, evaluate, train  # noqa: E402
from labelfree_app.training.config import GENERALIST_AUGMENT, DiffusionSettings  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
PAIRED = DATA / "paired"
ISL = DATA / "isl_condition_b"
WORK = ROOT / "build" / "generalist"
ISL_TEST = "512:1024,512:1024"
CANONICAL_UM = 0.3112  # the one pixel size a source states (celldetective); the others get scale jitter
VAL_REGION = "352:480,352:480"  # of each training field: picks the best step
SOURCES = ("isl", "sephace", "celldetective", "mlcp", "aisegcell")
AISEG_TEST_SESSIONS = ("170601SH11", "190905WW12")
CELLDETECTIVE_NEW_TEST = ("DecExp_600", "NKratio_Exp_404")
SNR_FULL_WEIGHT = 8.0
SNR_MIN = 2.0
LICENSES = {
    "isl": ("In silico labeling condition B (Christiansen et al., Cell 2018; Finkbeiner lab)", "Apache-2.0"),
    "sephace": ("sephaCe bright-field/DAPI sets (bobbyali/sephace @ 88ab4e3)",
                "MIT, with the note 'for noncommercial and research purposes'"),
    "celldetective": ("celldetective MCF-7 bright-field/Hoechst (remyeltorro/celldetective @ eaef61d, 727fe4d)",
                      "GPL-3.0"),
    "mlcp": ("MLCP Jurkat imaging flow cytometry (minh-doan/MLCP @ 4b4d936)", "BSD-3-Clause"),
    "aisegcell": ("aiSEGcell HSPC bright-field/nuclear marker (bethcg/aiSEGcell @ c73c923; Schirmacher et al., "
                  "aiSEGcell)", "CC-BY-4.0"),
}
MODEL_LICENSE = ("GPL-3.0-only; noncommercial research use only (training data: celldetective is GPL-3.0, "
                 "sephaCe carries a noncommercial note)")
CURVE_MINUTES = (1, 2, 5, 10)


@dataclass(frozen=True)
class Eval:
    """One scored test image: a pair, and the region of it that counts (None: all)."""

    spec: PairSpec
    region: str | None = None


NEW_MCF7_PREFIXES = ("DecExp_", "Jan23_", "NKratio_")


def celldetective_fields() -> list[str]:
    """The 41 original fields (40 crops and the test sample), sorted; the 6 newer regions are apart."""
    names = sorted(p.name[: -len("_input.tif")] for p in (PAIRED / "celldetective_mcf7").glob("*_input.tif"))
    return [n for n in names if not n.startswith(NEW_MCF7_PREFIXES)]


def celldetective_new_fields() -> list[str]:
    names = sorted(p.name[: -len("_input.tif")] for p in (PAIRED / "celldetective_mcf7").glob("*_input.tif"))
    return [n for n in names if n.startswith(NEW_MCF7_PREFIXES)]


def celldetective_split() -> tuple[list[str], list[str]]:
    old, new = celldetective_fields(), celldetective_new_fields()
    test_new = [n for n in new if n.startswith(CELLDETECTIVE_NEW_TEST)]
    return old[:31] + [n for n in new if n not in test_new], old[31:] + test_new


def aisegcell_fields() -> list[str]:
    return sorted(p.name[: -len("_input.tif")] for p in (PAIRED / "aisegcell_hspc").glob("*_input.tif"))


def aisegcell_split() -> tuple[list[str], list[str]]:
    fields = aisegcell_fields()
    test = [f for f in fields if f.split("_")[1] in AISEG_TEST_SESSIONS]
    return [f for f in fields if f not in test], test


def nuclear_snr(target: np.ndarray) -> float:
    """How far the brightest nuclei (99.5th percentile) stand above the median, in noise sigmas
    (the noise from the median absolute deviation of the image minus its 2-px Gaussian blur)."""
    from scipy.ndimage import gaussian_filter

    t = target.astype(np.float32)
    residual = t - gaussian_filter(t, 2.0)
    sigma = 1.4826 * float(np.median(np.abs(residual - np.median(residual)))) or 1e-6
    return float((np.percentile(t, 99.5) - np.median(t)) / sigma)


def field_weight(target_path: str) -> float:
    """A field's share of its source's patches: 1 from SNR_FULL_WEIGHT up, proportionally less below."""
    return min(1.0, nuclear_snr(np.asarray(read_image(target_path).data[0, 0])) / SNR_FULL_WEIGHT)


def prepare(work: Path) -> None:
    """Write the crops that split a single field (ISL, MLCP) into training and test parts."""
    from labelfree_app.io import read_plane_series

    crops = work / "crops"
    crops.mkdir(parents=True, exist_ok=True)
    stack = np.asarray(read_plane_series(str(ISL / "z_depth-*_PHASE_CONTRAST.png")).data[0])
    dapi = np.asarray(read_image(ISL / "depth_computation-MAXPROJECT_DAPI_CONFOCAL.png").data[0, 0])
    for name, (ys, xs) in {"top": (slice(0, 512), slice(0, 1024)),
                           "bottom_left": (slice(512, 1024), slice(0, 512))}.items():
        write_image(crops / f"isl_{name}_input.tif", stack[:, ys, xs], "ZYX")
        write_image(crops / f"isl_{name}_target.tif", dapi[ys, xs], "YX")
    bf = np.asarray(read_image(PAIRED / "mlcp_jurkat_ifc" / "exp1_G1_CP0008_input.tif").data[0, 0])
    dna = np.asarray(read_image(PAIRED / "mlcp_jurkat_ifc" / "exp1_G1_CP0008_target_dna.tif").data[0, 0])
    for name, xs in {"left": slice(0, 600), "right": slice(600, 1200)}.items():
        write_image(crops / f"mlcp_{name}_input.tif", bf[:, xs], "YX")
        write_image(crops / f"mlcp_{name}_target.tif", dna[:, xs], "YX")
    print(f"crops written to {crops}")


def train_pairs(source: str, work: Path) -> list[PairSpec]:
    """The training fields of one source as single-plane pairs (stacks give one pair per plane)."""
    crops = work / "crops"
    if source == "isl":
        return [PairSpec(input=str(crops / f"isl_{n}_input.tif"), target=str(crops / f"isl_{n}_target.tif"), plane=z)
                for n in ("top", "bottom_left") for z in range(13)]
    if source == "sephace":
        folder = PAIRED / "sephace_bf_dapi"
        return [PairSpec(input=str(folder / "set1_input.tif"), target=str(folder / "set1_target_dapi.tif"), plane=z)
                for z in range(6)]
    if source == "celldetective":
        folder = PAIRED / "celldetective_mcf7"
        return [PairSpec(input=str(folder / f"{f}_input.tif"), target=str(folder / f"{f}_target_hoechst.tif"),
                         pixel_size_um=CANONICAL_UM) for f in celldetective_split()[0]]
    if source == "mlcp":
        return [PairSpec(input=str(crops / "mlcp_left_input.tif"), target=str(crops / "mlcp_left_target.tif"))]
    if source == "aisegcell":
        return aisegcell_pairs(aisegcell_split()[0])
    raise ValueError(source)


def aisegcell_pairs(fields: list[str]) -> list[PairSpec]:
    folder = PAIRED / "aisegcell_hspc"
    pairs = [PairSpec(input=str(folder / f"{f}_input.tif"), target=str(folder / f"{f}_target_nuc.tif"),
                      weight=field_weight(str(folder / f"{f}_target_nuc.tif"))) for f in fields]
    return [p for p in pairs if p.weight * SNR_FULL_WEIGHT >= SNR_MIN]  # no nuclear signal: neither trained nor scored


def test_items(source: str, work: Path) -> list[Eval]:
    """The held-out test images of one source (focus-near planes of the stacks)."""
    crops = work / "crops"
    if source == "isl":
        return [Eval(PairSpec(input=str(ISL / f"z_depth-{z}_PHASE_CONTRAST.png"),
                              target=str(ISL / "depth_computation-MAXPROJECT_DAPI_CONFOCAL.png")), ISL_TEST)
                for z in (3, 6, 9)]
    if source == "sephace":
        folder = PAIRED / "sephace_bf_dapi"
        return [Eval(PairSpec(input=str(folder / "set2_input.tif"), target=str(folder / "set2_target_dapi.tif"),
                              plane=z)) for z in (2, 3)]
    if source == "celldetective":
        folder = PAIRED / "celldetective_mcf7"
        return [Eval(PairSpec(input=str(folder / f"{f}_input.tif"), target=str(folder / f"{f}_target_hoechst.tif")))
                for f in celldetective_split()[1]]
    if source == "mlcp":
        return [Eval(PairSpec(input=str(crops / "mlcp_right_input.tif"), target=str(crops / "mlcp_right_target.tif")))]
    if source == "aisegcell":
        return [Eval(p) for p in aisegcell_pairs(aisegcell_split()[1])]
    raise ValueError(source)


def weighted(sources: list[str], work: Path) -> tuple[PairSpec, ...]:
    """Training pairs of ``sources``, each source weighing the same in patch drawing."""
    from dataclasses import replace

    pairs = []
    for source in sources:
        found = train_pairs(source, work)
        total = sum(p.weight for p in found)
        pairs += [replace(p, weight=p.weight / total) for p in found]
    return tuple(pairs)


def score(package: Path | str, source: str, work: Path, **kwargs: object) -> dict:
    """Mean Pearson r (and calibration when there is a variance map) over a source's test images."""
    rows = []
    for item in test_items(source, work):
        report = evaluate(package, [item.spec], region=item.region, **kwargs)
        rows.append(report.rows[0])
    result = {"pearson_r": float(np.mean([r.pearson_r for r in rows])), "images": len(rows)}
    for key in ("within_1sigma", "within_2sigma", "std_error_spearman"):
        values = [getattr(r, key) for r in rows if getattr(r, key) is not None]
        if values:
            result[key] = float(np.mean(values))
    return result


def unet_config(pairs: tuple[PairSpec, ...], out: Path, work_dir: Path, minutes: float, **extra: object) -> TrainConfig:
    options: dict = dict(
        pairs=pairs, out_dir=out, work_dir=work_dir, model_type="unet", val_region=VAL_REGION,
        input_normalization="percentile", patch_shape=(128, 128), batch_size=8, buffer_size=len(pairs),
        foreground_weight=0.5, intensity_jitter=0.15, augmentation=GENERALIST_AUGMENT, pixel_size_um=CANONICAL_UM,
        max_steps=100_000, max_minutes=minutes, lr_schedule="constant", warmup_steps=100, val_every=200,
        checkpoint_every=1000, overwrite=True, unet=UNetSettings(depth=4, base_channels=16), target_name="DNA (nuclear stain)",
        input_modality="transmitted light (bright-field or phase contrast, one plane)")
    options.update(extra)
    return TrainConfig(**options)


def cmd_train(args: argparse.Namespace) -> None:
    work = args.work
    sources = [s for s in SOURCES if s != args.holdout]
    name = "lf-nuclei-2d" if args.holdout == "none" else f"loso-{args.holdout}"
    name += f"-{args.tag}" if args.tag else ""
    out = work / "models" / name
    extra = {}
    if args.holdout == "none":
        extra = dict(model_id="lf-nuclei-2d", name="Nuclei from any transmitted light (2D, generalist)",
                     license=MODEL_LICENSE, attribution=attribution(sources), data_description=data_text(sources),
                     description=("Generalist fnet-style U-Net predicting a nuclear stain (DAPI/Hoechst) from one plane "
                                  "of bright-field or phase contrast, trained on five microscopes and cell types with "
                                  "augmentation for scale, illumination (vignetting), polarity, contrast, gamma, "
                                  "defocus, 8-bit quantization, noise and pixel size."))
    if args.resume:
        extra["resume"] = True
    if args.steps:
        extra["max_steps"] = args.steps
    if args.schedule != "constant":
        extra["lr_schedule"] = args.schedule
    if args.base_channels:
        extra["unet"] = UNetSettings(depth=args.depth, base_channels=args.base_channels)
    config = unet_config(weighted(sources, work), out, work / "runs" / name, args.minutes, **extra)
    started = time.time()
    train(config, progress=report_progress)
    print(f"{name}: trained in {time.time() - started:.0f} s", flush=True)


def cmd_curve(args: argparse.Namespace) -> None:
    """Fine-tune (from the model that never saw the source) or train from scratch on the source's
    training fields, saving the weights after 1, 2, 5 and 10 minutes."""
    work = args.work
    name = f"curve-{args.source}-{args.start}" + (f"-{args.tag}" if args.tag else "")
    init = str(work / "models" / f"loso-{args.source}") if args.start == "loso" else None
    extra = {"lr": args.lr} if args.lr else {}
    config = unet_config(weighted([args.source], work), work / "models" / name, work / "runs" / name, args.minutes,
                         init_from=init, snapshot_minutes=tuple(m for m in CURVE_MINUTES if m <= args.minutes),
                         val_every=50, early_stop_patience=0 if init is None else 8, lr_schedule=args.schedule,
                         **extra)
    train(config, progress=report_progress)


def cmd_score_run(args: argparse.Namespace) -> None:
    """Pearson r on the source's test fields of one curve run's snapshots (for schedule comparisons)."""
    points = {}
    for minutes in CURVE_MINUTES:
        package = snapshot_package(args.run, minutes, args.work)
        if package is None or minutes > args.up_to:
            continue
        points[minutes] = (round(score(package, args.source, args.work)["pearson_r"], 4),
                           steps_at(args.run, minutes, args.work))
    package = args.work / "models" / args.run
    if (package / "manifest.json").is_file():  # the run's kept weights (best validation)
        points["package"] = round(score(package, args.source, args.work)["pearson_r"], 4)
    print(args.run, json.dumps(points), flush=True)


def cmd_score(args: argparse.Namespace) -> None:
    """Pearson r of one model (a package, or a run's checkpoint) on the test fields of each source."""
    package = Path(args.model) if Path(args.model).is_dir() else args.work / "models" / args.model
    if args.checkpoint:
        package = checkpoint_package(args.model, args.checkpoint, args.work)
    rows = {source: round(score(package, source, args.work)["pearson_r"], 4) for source in args.sources}
    print(args.model, args.checkpoint or "kept", json.dumps(rows), "mean", round(float(np.mean(list(rows.values()))), 4),
          flush=True)


def checkpoint_package(run: str, step: int, work: Path) -> Path:
    """A model package of the run's checkpoint at ``step`` (built next to the run's kept package)."""
    from safetensors.torch import load_file

    from labelfree_app.models.package import load_package, save_package

    folder = work / "runs" / run / "checkpoints" / f"step-{step:08d}"
    out = work / "models" / f"{run}-step{step}"
    if not (out / "manifest.json").is_file():  # a run still going has no package yet: a LOSO model's manifest
        kept = load_package(work / "models" / run if (work / "models" / run).is_dir() else work / "models" / "loso-isl")
        save_package(out, kept.manifest.to_dict(), load_file(str(folder / "model.safetensors")), overwrite=True)
    return out


def cmd_diffusion(args: argparse.Namespace) -> None:
    """Residual diffusion around a generalist U-Net: the U-Net gives the mean, the denoiser samples the
    rest. ``--holdout S`` trains it without source S on top of loso-S (a leave-one-source-out pair)."""
    work = args.work
    sources = [s for s in SOURCES if s != args.holdout]
    name = "lf-nuclei-2d-diffusion" if args.holdout == "none" else f"loso-{args.holdout}-diffusion"
    mean = work / "models" / (args.mean or ("lf-nuclei-2d" if args.holdout == "none" else f"loso-{args.holdout}"))
    if not (mean / "manifest.json").is_file():
        raise SystemExit(f"The mean U-Net {mean} is not there; train it first (train --holdout {args.holdout}).")
    started = time.time()
    config = unet_config(
        weighted(sources, work), work / "models" / name, work / "runs" / name,
        args.minutes, model_type="diffusion", val_every=500, lr=2e-4,
        diffusion=DiffusionSettings(base_channels=16, channel_mults=(1, 2, 2), attention_levels=(), patch_size=2,
                                    sampler="dpmpp2m", sampling_steps=25, samples=8, val_samples=4,
                                    val_sampling_steps=10, val_max_shape=(128, 128), mean_model=str(mean)),
        model_id=name, name="Nuclei from any transmitted light (2D, diffusion with uncertainty)", resume=args.resume,
        license=MODEL_LICENSE, attribution=attribution(sources), data_description=data_text(sources),
        description=("Residual diffusion around lf-nuclei-2d: the generalist U-Net predicts the mean and the "
                     "denoiser samples what it got wrong, so several samples give a mean and a variance map for "
                     "any single-plane bright-field or phase-contrast image."))
    train(config, progress=report_progress)
    print(f"{name}: trained in {time.time() - started:.0f} s on top of {mean.name}", flush=True)


def diffusion_row(diffusion: Path, unet: Path, source: str, work: Path, steps: int = 25) -> dict:
    """A diffusion model on a source's test crops (8 samples): r of the mean, within 1 and 2 sigma,
    Spearman of std vs error, in z-scores (each source's stain has its own units); its U-Net mean's
    r on the same crops beside it."""
    items = diffusion_items(source, work)
    found = [evaluate(diffusion, [item.spec], samples=8, steps=steps, seed=0, units="zscore").rows[0] for item in items]
    row = {key: round(float(np.mean([getattr(r, key) for r in found])), 4)
           for key in ("pearson_r", "within_1sigma", "within_2sigma", "std_error_spearman")}
    row["unet_pearson_r_same_crops"] = round(float(np.mean([evaluate(unet, [item.spec]).rows[0].pearson_r
                                                            for item in items])), 4)
    row["crops"], row["steps"] = len(found), steps
    return row


def cmd_score_diffusion(args: argparse.Namespace) -> None:
    """Each leave-one-source-out diffusion model on its held-out source's test crops (8 samples x
    25 steps): r of the mean, within 1 and 2 sigma, Spearman of std vs error; its U-Net mean's r on
    the same crops beside it. Written to report.json under 'diffusion_loso'."""
    work = args.work
    path = work / "report.json"
    report = json.loads(path.read_text()) if path.is_file() else {}
    table = report.get("diffusion_loso", {})
    for source in args.sources:
        package = work / "models" / f"loso-{source}-diffusion"
        if not (package / "manifest.json").is_file():
            continue
        row = diffusion_row(package, work / "models" / f"loso-{source}", source, work, args.steps)
        table[source] = row
        print(source, row, flush=True)
        report["diffusion_loso"] = table
        path.write_text(json.dumps(report, indent=1))


def report_progress(event: object) -> None:
    kind = type(event).__name__
    if kind == "ValidationDone":
        print(f"step {event.step}: val r {event.val_r:.4f}{' (best)' if event.is_best else ''}", flush=True)
    elif kind in ("TrainStarted", "TrainFinished"):
        print(event, flush=True)


def diffusion_items(source: str, work: Path) -> list[Eval]:
    """256x256 crops of test images for diffusion scoring (8 samples per pixel cost minutes per
    megapixel), written as files so the sampler sees only the crop."""
    from labelfree_app.training.datasets import read_input_image, read_target_zyx
    from labelfree_app.training.sampling import Region

    items = test_items(source, work)
    regions = {"isl": "640:896,640:896", "sephace": "384:640,544:800", "celldetective": "128:384,128:384",
               "mlcp": "400:656,172:428", "aisegcell": "896:1152,896:1152"}
    chosen = {"isl": items[1:2], "celldetective": items[:3], "aisegcell": items[::2]}.get(source, items[:1])  # ISL: plane 6
    boxes = [(item, regions[source]) for item in chosen]
    crops = []
    for number, (item, region) in enumerate(boxes):
        window = Region.parse(region).slices
        inp, tgt = work / "crops" / f"diff_{source}_{number}_input.tif", work / "crops" / f"diff_{source}_{number}_target.tif"
        if not inp.is_file():
            write_image(inp, np.asarray(read_input_image(item.spec).data[0, 0])[window], "YX")
            write_image(tgt, read_target_zyx(item.spec)[0][window], "YX")
        crops.append(Eval(PairSpec(input=str(inp), target=str(tgt))))
    return crops


def snapshot_package(run: str, minutes: float, work: Path) -> Path | None:
    """A package of a curve run's weights after ``minutes`` (its final package if it stopped earlier)."""
    from safetensors.torch import load_file

    from labelfree_app.models.package import load_package, save_package

    final = work / "models" / run
    snap = work / "runs" / run / "snapshots" / f"{minutes:g}min.safetensors"
    if not snap.is_file():
        return final if final.is_dir() else None
    out = work / "snapshots" / f"{run}-{minutes:g}min"
    save_package(out, load_package(final).manifest.to_dict(), load_file(str(snap)), overwrite=True)
    return out


def steps_at(run: str, minutes: float, work: Path) -> int | None:
    """Training steps done after ``minutes`` (from the run's log.csv)."""
    import csv

    log = work / "runs" / run / "log.csv"
    if not log.is_file():
        return None
    with log.open() as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("train_loss")]
    done = [int(r["step"]) for r in rows if float(r["seconds"]) <= 60 * minutes]
    return max(done) if done else 0


def cmd_report(args: argparse.Namespace) -> None:
    """Score every model on test fields only and write build/generalist/report.json."""
    work = args.work
    models = work / "models"
    path = work / "report.json"
    report = json.loads(path.read_text()) if path.is_file() else {}
    demo = ROOT / "tests" / "fixtures" / "models" / "demo-nuclei-unet"  # the synthetic demo: the baseline
    if "loso" not in report or args.redo:
        table = {}
        for source in SOURCES:
            row = {"demo_baseline": score(demo, source, work)["pearson_r"] if demo.is_dir() else None}
            if (models / f"loso-{source}").is_dir():
                row["zero_shot"] = score(models / f"loso-{source}", source, work)["pearson_r"]
            if (models / "lf-nuclei-2d").is_dir():
                row["all_sources_unseen_fields"] = score(models / "lf-nuclei-2d", source, work)["pearson_r"]
            table[source] = row
            print(source, row, flush=True)
        report["loso"] = table
        path.write_text(json.dumps(report, indent=1))
    if "curves" not in report or args.redo or len(report["curves"]) < 2 * len(SOURCES):
        curves = {} if args.redo else report.get("curves", {})
        for source in SOURCES:
            for start in ("loso", "scratch"):
                run = f"curve-{source}-{start}"
                if not (models / run).is_dir() or run in curves:
                    continue  # not finished yet, or scored already
                points = {"0": report["loso"][source].get("zero_shot") if start == "loso" else None}
                steps = {"0": 0}
                for minutes in CURVE_MINUTES:
                    package = snapshot_package(run, minutes, work)
                    points[str(minutes)] = score(package, source, work)["pearson_r"] if package else None
                    steps[str(minutes)] = steps_at(run, minutes, work)
                curves[run] = {"source": source, "start": start, "pearson_r": points, "steps": steps}
                print(run, points, steps, flush=True)
                report["curves"] = curves
                path.write_text(json.dumps(report, indent=1))
    diffusion = models / "lf-nuclei-2d-diffusion"
    if diffusion.is_dir() and ("diffusion" not in report or args.redo):
        rows = {}
        for source in SOURCES:
            rows[source] = diffusion_row(diffusion, models / "lf-nuclei-2d", source, work)
            print(source, rows[source], flush=True)
        report["diffusion"] = rows
        path.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


WEAKNESSES = (
    "Trained on five sources (cultured neurons in phase contrast, adherent cells and MCF-7 in bright-field, Jurkat "
    "cells on an imaging flow cytometer, blood stem cells in wells and traps); other cell types, DIC, very different "
    "magnifications and thick tissue are untested. On a microscope it never saw it is weak: leave-one-source-out r "
    "0.20 (MCF-7) to 0.87 (Jurkat), mean 0.55. Check the trust estimate, try the scale search (--scale search, Run "
    "panel > Scale) where the pixel size is unknown, and fine-tune it on a few of your own pairs (Quick fine-tune, "
    "2 minutes). On MCF-7 fields with NK cells on top it reaches only r 0.30. Far-from-focus planes give weak "
    "predictions. Predictions are in z-score units of the stain, not intensities. An image whose file states its "
    "pixel size is resampled to 0.3112 um/px (the one training source that states its size); others were covered "
    "by zoom jitter of 0.4-2.5x in training.")


def cmd_finalize(args: argparse.Namespace) -> None:
    """Copy a trained model into resources/models with its card: test figures, LOSO table, curves, licenses."""
    from labelfree_app.models.package import load_package, save_package

    work = args.work
    report = json.loads((work / "report.json").read_text()) if (work / "report.json").is_file() else {}
    name = args.model
    package = load_package(work / "models" / (args.package or name))
    manifest = package.manifest.to_dict()
    manifest["target"] = "DNA (DAPI)"
    manifest["license"] = MODEL_LICENSE
    manifest["description"] += " Known weaknesses: " + WEAKNESSES
    training = manifest["training"]
    training["data"] = data_text(list(SOURCES)) + " " + attribution(list(SOURCES))
    training["settings"]["datasets"] = [{"source": s, "data": LICENSES[s][0], "license": LICENSES[s][1]}
                                        for s in SOURCES]
    training["settings"]["hardware"] = args.hardware
    if name == "lf-nuclei-2d" and "loso" in report:
        held_out = {s: row.get("all_sources_unseen_fields") for s, row in report["loso"].items()}
        manifest["metrics"] = {
            "pearson_r": float(np.mean([r for r in held_out.values() if r is not None])),
            "test_region": "held-out test fields of each source (never trained on); mean over the five sources",
            "per_source": held_out,
            "leave_one_source_out": {s: {"zero_shot_r": row.get("zero_shot"), "demo_model_r": row.get("demo_baseline")}
                                     for s, row in report["loso"].items()},
            "finetune_curves": {run: c["pearson_r"] for run, c in report.get("curves", {}).items()},
            "validation": manifest.get("metrics"),
        }
    elif "diffusion" in report:
        rows = report["diffusion"]
        manifest["metrics"] = {
            "pearson_r": float(np.mean([row["pearson_r"] for row in rows.values()])),
            "test_region": "256x256 crops of each source's held-out test fields; 8 samples x 25 DPM-Solver++ steps",
            "per_source": rows,
            "std_error_spearman": float(np.mean([row["std_error_spearman"] for row in rows.values()])),
            "within_1sigma": float(np.mean([row["within_1sigma"] for row in rows.values()])),
            "validation": manifest.get("metrics"),
        }
    out = ROOT / "resources" / "models" / name
    save_package(out, manifest, package.state_dict(), overwrite=True)
    print(out, json.dumps(manifest["metrics"], indent=1))


def attribution(sources: list[str]) -> str:
    return "Training data: " + "; ".join(f"{LICENSES[s][0]}, {LICENSES[s][1]}" for s in sources) + "."


def data_text(sources: list[str]) -> str:
    return ("Training fields of " + ", ".join(sources) + " (see scripts/train_generalist.py for the splits); "
            "the test fields of every source were never trained on.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--threads", type=int, default=1)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare")
    p = sub.add_parser("train")
    p.add_argument("--holdout", choices=[*SOURCES, "none"], required=True)
    p.add_argument("--minutes", type=float, default=15)
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (all runs resumed together)")
    p.add_argument("--resume", action="store_true", help="go on from the run's last checkpoint (this many minutes more)")
    p.add_argument("--base-channels", type=int, default=0, help="U-Net width (default 16)")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--tag", default="", help="suffix of the run's name (size probes)")
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                   help="cosine: annealed over --minutes (or --steps, whichever ends first); the long run")
    p = sub.add_parser("curve")
    p.add_argument("--source", choices=SOURCES, required=True)
    p.add_argument("--start", choices=["loso", "scratch"], required=True)
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--lr", type=float, help="learning rate (default: scratch 1e-3, fine-tuning the automatic one)")
    p.add_argument("--tag", default="", help="suffix of the run's name, for schedule variants")
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                   help="constant: the curve's snapshots share one run; cosine: annealed over --minutes, as the "
                        "app's presets run (one point per run)")
    p = sub.add_parser("score-run")
    p.add_argument("--run", required=True)
    p.add_argument("--source", choices=SOURCES, required=True)
    p.add_argument("--up-to", type=float, default=10)
    p = sub.add_parser("score")
    p.add_argument("--model", required=True, help="a model folder, or a name under WORK/models (a run's name with --checkpoint)")
    p.add_argument("--checkpoint", type=int, default=0, help="score the run's checkpoint at this step")
    p.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES))
    p = sub.add_parser("diffusion")
    p.add_argument("--resume", action="store_true", help="go on from the run's last checkpoint (this many minutes more)")
    p.add_argument("--minutes", type=float, default=25)
    p.add_argument("--holdout", choices=[*SOURCES, "none"], default="none")
    p.add_argument("--mean", help="the mean U-Net under WORK/models (default: lf-nuclei-2d, or loso-SOURCE)")
    p = sub.add_parser("score-diffusion")
    p.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES))
    p.add_argument("--steps", type=int, default=25)
    p = sub.add_parser("finalize")
    p.add_argument("--model", choices=["lf-nuclei-2d", "lf-nuclei-2d-diffusion"], required=True)
    p.add_argument("--hardware", default="2-core x86-64 CPU (torch, 1 thread), no GPU")
    p.add_argument("--package", help="the trained package under WORK/models (default: the model's name)")
    p = sub.add_parser("report")
    p.add_argument("--redo", action="store_true", help="score again what report.json already holds")
    args = parser.parse_args()
    if not PAIRED.is_dir() or not ISL.is_dir():
        print(f"The data is not at {DATA}; nothing to train on.", file=sys.stderr)
        return 1
    import torch

    torch.set_num_threads(args.threads)
    {"prepare": lambda a: prepare(a.work), "train": cmd_train, "curve": cmd_curve, "score-run": cmd_score_run, "score": cmd_score,
     "diffusion": cmd_diffusion, "score-diffusion": cmd_score_diffusion, "report": cmd_report,
     "finalize": cmd_finalize}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
