"""The manifest a training run writes: what the model is, how to feed it, where it came from."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from labelfree_app.training.config import TrainConfig
from labelfree_app.training.datasets import describe_pairs
from labelfree_app.training.licensing import derived_terms

TARGET_NORMALIZATION_NOTE = (
    "Each training target was z-scored over its whole image (mean 0, std 1), so the network predicts "
    "z-scores; prediction maps them back to the stain's units with 'stain_units' (see "
    "normalization.output), unless asked for z-scores (--units zscore)."
)


@dataclass(frozen=True)
class TrainingRecord:
    """What the loop knows at the end of a run."""

    arch_id: str
    arch_kwargs: dict[str, Any]
    in_channels: int
    z_as_channels: bool
    steps: int
    seconds: float
    device: str
    stop_reason: str
    validation: dict[str, Any] | None  # the kept weights' validation result, with "step"
    parent: dict[str, str] | None = None  # the model fine-tuned from: id, version, sha256, path, license, attribution
    stain_units: dict[str, Any] | None = None  # the targets' intensities (training/stain_units.py)
    kept_final: bool = False  # the package holds the final (annealed) weights, not the best validated ones
    trust: dict[str, Any] | None = None  # the training inputs' profile (training/input_profile.py), 2D only


def model_id_for(config: TrainConfig) -> str:
    """``config.model_id`` or one made from the output folder's name."""
    if config.model_id:
        return config.model_id
    slug = re.sub(r"[^a-z0-9._-]+", "-", config.out_dir.name.lower()).strip("-._")
    return slug if slug and slug[0].isalnum() else f"model-{slug or 'trained'}"


def default_tiling(dims: int) -> dict[str, list[int]]:
    if dims == 3:
        return {"tile_shape": [32, 128, 128], "halo": [8, 32, 32]}
    return {"tile_shape": [256, 256], "halo": [32, 32]}


def build_manifest(config: TrainConfig, record: TrainingRecord) -> dict[str, Any]:
    """The manifest dict (format_version 1) for ``save_package``; weights are added by it."""
    tiling = default_tiling(config.dims)
    if config.tile_shape:
        tiling["tile_shape"] = list(config.tile_shape)
    if config.halo:
        tiling["halo"] = list(config.halo)
    axes = "CYX" if config.dims == 2 else "CZYX"
    modality = config.input_modality
    if record.z_as_channels:
        input_names = [f"{modality} z{k}" for k in range(record.in_channels)]
    else:
        input_names = [modality] if record.in_channels == 1 else [f"{modality} {k}" for k in range(record.in_channels)]
    units = record.stain_units
    terms = derived_terms(config.license, config.attribution, record.parent)
    manifest: dict[str, Any] = {
        "format_version": 1,
        "id": model_id_for(config),
        "name": config.name or model_id_for(config),
        "version": config.version,
        "description": (config.description or _default_description(config, record)) + _parent_note(config, record),
        "kind": config.model_type,
        "target": config.target_name,
        "input_modality": modality,
        "architecture": {"id": record.arch_id, "kwargs": record.arch_kwargs},
        "dims": config.dims,
        "input": {"axes": axes, "channels": record.in_channels, "channel_names": input_names,
                  "z_as_channels": record.z_as_channels},
        "output": {"axes": axes, "channels": 1, "channel_names": [config.target_name],
                   "dtype": units["dtype"] if units else "float32"},
        "normalization": {
            "input": {"method": config.input_normalization, "params": {}},
            # Targets were z-scored per image; these map the network's z-scores back to the stain's units.
            "output": {"method": "zscore", "params": {"mean": units["mean"], "std": units["std"]}} if units else None,
        },
        "tiling": tiling,
        "diffusion": _diffusion_block(config) if config.model_type == "diffusion" else None,
        "training": _training_block(config, record),
        "metrics": _metrics_block(config, record),
        "license": terms.license,
        "attribution": terms.attribution,
        "demo": config.demo,
        "tta": config.model_type == "unet",
    }
    if record.trust:
        manifest["trust"] = record.trust
    return manifest


def _default_description(config: TrainConfig, record: TrainingRecord) -> str:
    family = "U-Net regressor" if config.model_type == "unet" else "conditional diffusion model"
    stack = f" from a {record.in_channels}-plane z-stack" if record.z_as_channels else ""
    origin = f", fine-tuned from {record.parent['id']}" if record.parent else ""
    return (f"{config.dims}D {family} predicting {config.target_name}{stack} ({config.input_modality}), "
            f"trained with LabelFree for {record.steps} steps{origin}. Outputs are in the stain's units (z-scores "
            "mapped back with the training targets' typical mean and standard deviation).")


def _parent_note(config: TrainConfig, record: TrainingRecord) -> str:
    if not record.parent or not config.description:
        return ""
    return f" Fine-tuned from {record.parent['id']} {record.parent['version']} (weights sha256 {record.parent['sha256']})."


def _diffusion_block(config: TrainConfig) -> dict[str, Any]:
    d = config.diffusion
    return {"schedule": d.schedule, "train_steps": d.train_steps, "prediction": d.prediction,
            "sampler": d.sampler, "steps": d.sampling_steps, "samples": d.samples, "eta": d.eta}


def _training_block(config: TrainConfig, record: TrainingRecord) -> dict[str, Any]:
    """``training``; the manifest keeps only data/steps/seconds/device/settings, so the data list,
    stop reason and target normalization live inside ``settings``."""
    data = config.data_description or f"{len(config.pairs)} paired image(s)"
    settings = config.settings_dict()
    settings.update({
        "pairs": describe_pairs(config.pairs),
        "val_pairs": describe_pairs(config.val_pairs) if config.val_pairs else [],
        "stop_reason": record.stop_reason,
        "init_from": record.parent,
        "target_normalization": {"method": "zscore", "scope": "whole image, per image",
                                 "note": TARGET_NORMALIZATION_NOTE, "stain_units": record.stain_units},
    })
    return {"data": data, "steps": record.steps, "seconds": round(record.seconds, 1), "device": record.device,
            "settings": settings}


def _metrics_block(config: TrainConfig, record: TrainingRecord) -> dict[str, Any]:
    validation = record.validation
    if not validation:
        return {}
    parts = []
    if config.val_region:
        parts.append(f"validation region {config.val_region} of the training images")
    if config.val_pairs:
        parts.append(f"{len(config.val_pairs)} validation pair(s)")
    metrics: dict[str, Any] = {
        "pearson_r": validation["val_r"],
        "test_region": "; ".join(parts),
        "source": "validation during training (" + ("final step" if record.kept_final else "best step") + ")",
        "step": validation.get("step"),
    }
    if config.model_type == "diffusion":
        d = config.diffusion
        metrics["samples"] = d.val_samples
        metrics["sampling_steps"] = d.val_sampling_steps
        if d.val_max_shape:
            size = "×".join(map(str, d.val_max_shape))
            metrics["test_region"] += f" (centre crop of at most {size} px of each)"
        for key in ("within_1sigma", "within_2sigma", "std_error_spearman"):
            if key in validation:
                metrics[key] = validation[key]
    return metrics


# --- the card as text: how far its predictions can be trusted ----------------------------------
def calibration_figures(path: Path | None = None) -> dict[str, Any]:
    """The ``figures`` of the bundled trust calibration (resources/trust_calibration.json), by model
    family ("unet+profile", "diffusion", ...); empty when the file is missing or unreadable."""
    from labelfree_app.core.trust_recorder import CALIBRATION_FILE
    from labelfree_app.paths import resources_dir

    file = Path(path) if path else resources_dir() / CALIBRATION_FILE
    try:
        figures = json.loads(file.read_text(encoding="utf-8")).get("figures", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return figures if isinstance(figures, dict) else {}


def trust_card_lines(manifest: Mapping[str, Any], figures: Mapping[str, Any] | None = None) -> list[str]:
    """The model card's "Trust" part for people: whether predictions get a trust map (the model records
    its training inputs) and how well the expected r matched real stains on unseen microscopes."""
    from labelfree_app.core.trust_recorder import calibration_key

    figures = calibration_figures() if figures is None else figures
    lines = ["Trust"]
    if int(manifest.get("dims", 2)) != 2:
        return lines + ["  Not estimated for 3D models: predictions get no expected r and no trust map."]
    has_profile = bool((manifest.get("trust") or {}).get("input_profile"))
    lines.append("  Input profile: yes; predictions can get a trust map (--trust-map) of where the input looks "
                 "like the training images." if has_profile else
                 "  Input profile: no (its manifest does not record its training inputs); predictions get no "
                 "trust map. Fine-tune the model to get one.")
    key = calibration_key(str(manifest.get("kind", "unet")), has_profile)
    found = next(((k, figures[k]) for k in (key, key.replace("+profile", "")) if isinstance(figures.get(k), dict)),
                 None)
    if found is None:
        return lines + ["  Calibration: none installed, so predictions carry no expected r."]
    name, entry = found
    held = entry.get("held_out_by_source") or {}
    lines.append(f"  Expected r calibrated on predictions for microscopes the models never saw ({name}, "
                 f"{held.get('fields', '?')} fields, held out by source): Spearman {_figure(held.get('spearman'))} "
                 f"with the real r, mean error {_figure(held.get('mean_abs_error'))}, "
                 f"{_share(held.get('flagged_of_below_0.5'))} of the fields with r below 0.5 flagged "
                 "\"not trustworthy\"" + (f" (and {_share(held['flagged_of_at_least_0.5'])} of those with r of 0.5 "
                                          "or more)" if "flagged_of_at_least_0.5" in held else "") + ".")
    return lines


def _figure(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "?"


def _share(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, (int, float)) and value == value else "?"
