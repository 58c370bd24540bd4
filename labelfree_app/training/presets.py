"""Size presets and a time budget turned into a ``TrainConfig`` (what the app's Train page asks).

A biologist picks a model type, "fast (CPU)" or "quality (GPU)", a time budget in minutes and
a validation choice; ``config_from_choices`` fills in the rest from the CLI's defaults.
Training stops at the preset's step count or the time budget, whichever comes first.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from labelfree_app.errors import TrainingDataError
from labelfree_app.training.config import DiffusionSettings, PairSpec, TrainConfig, UNetSettings

PRESET_LABELS = {"fast": "Fast (CPU)", "quality": "Quality (GPU)", "finetune": "Quick fine-tune (2 min)"}
MODEL_TYPE_LABELS = {"unet": "U-Net (one prediction, fast)", "diffusion": "Diffusion (samples and a variance map)"}


@dataclass(frozen=True)
class Preset:
    """Network size, patches and steps for one model type."""

    patch_shape: tuple[int, int]
    batch_size: int
    max_steps: int
    val_every: int
    unet: UNetSettings = field(default_factory=UNetSettings)
    diffusion: DiffusionSettings = field(default_factory=DiffusionSettings)


PRESETS: dict[tuple[str, str], Preset] = {
    ("unet", "fast"): Preset((64, 64), 8, 2000, 100, unet=UNetSettings(depth=3, base_channels=16)),
    ("unet", "quality"): Preset((128, 128), 16, 20000, 500, unet=UNetSettings(depth=4, base_channels=32)),
    ("diffusion", "fast"): Preset((64, 64), 8, 3000, 250, diffusion=DiffusionSettings(
        base_channels=16, channel_mults=(1, 2, 2), attention_levels=(), val_samples=2, val_sampling_steps=10,
        val_max_shape=(128, 128))),
    ("diffusion", "quality"): Preset((128, 128), 16, 50000, 1000),
    # Fine-tuning: the network comes from the model started from; frequent validation for early stopping.
    ("unet", "finetune"): Preset((128, 128), 8, 5000, 25),
    ("diffusion", "finetune"): Preset((64, 64), 8, 5000, 100, diffusion=DiffusionSettings(
        val_samples=2, val_sampling_steps=10, val_max_shape=(128, 128))),
}


def preset_for(model_type: str, preset: str) -> Preset:
    try:
        return PRESETS[(model_type, preset)]
    except KeyError:
        raise TrainingDataError(
            f"There is no '{preset}' preset for a '{model_type}' model; pick fast or quality.") from None


def auto_val_region(shapes: Sequence[Sequence[int]]) -> str:
    """A bottom-right box of every image, held out for validation: a quarter of the smallest
    image's side (at least 64 px, at most half of it), as ``"y0:y1,x0:x1"``."""
    if not shapes:
        raise TrainingDataError("There are no checked pairs to place a validation region in; add pairs first.")
    height = min(int(s[-2]) for s in shapes)
    width = min(int(s[-1]) for s in shapes)
    side_y = min(height // 2, max(height // 4, 64))
    side_x = min(width // 2, max(width // 4, 64))
    return f"{height - side_y}:{height},{width - side_x}:{width}"


def default_out_dir(root: Path, name: str, *, now: float | None = None) -> Path:
    """A new folder under ``root`` named after the model and the time (never an earlier run's)."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._") or "model"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return Path(root) / f"{slug}-{stamp}"


def config_from_choices(
    pairs: Sequence[PairSpec],
    out_dir: Path,
    *,
    model_type: str,
    preset: str,
    minutes: float | None,
    val_region: str | None = None,
    val_pairs: Sequence[PairSpec] = (),
    max_steps: int | None = None,
    target_name: str = "fluorescence",
    name: str = "",
    smallest_shape: Sequence[int] | None = None,
    **changes: Any,
) -> TrainConfig:
    """The ``TrainConfig`` of the Train page's choices; ``changes`` override any field last.

    With ``smallest_shape`` (Y, X of the smallest image) the patches shrink to fit beside the
    validation region in small images.
    """
    chosen = preset_for(model_type, preset)
    if preset == "finetune" and not changes.get("init_from"):
        raise TrainingDataError("A quick fine-tune starts from a model; choose one under 'Start from'.")
    patch = chosen.patch_shape
    if smallest_shape:
        fit = max(16, (min(int(smallest_shape[-2]), int(smallest_shape[-1])) // 2) // 16 * 16)
        patch = (min(patch[0], fit), min(patch[1], fit))
    if not val_region and not val_pairs:
        raise TrainingDataError(
            "Choose a validation region or tick at least one pair for validation, so the best model can be kept.")
    if val_pairs and len(val_pairs) >= len(pairs) + len(val_pairs):
        raise TrainingDataError("Every pair is ticked for validation; leave at least one pair to train on.")
    steps = int(max_steps) if max_steps else chosen.max_steps
    config = TrainConfig(
        pairs=tuple(pairs), out_dir=Path(out_dir), model_type=model_type, val_region=val_region or None,
        val_pairs=tuple(val_pairs), patch_shape=patch, batch_size=chosen.batch_size, max_steps=steps,
        max_minutes=minutes, val_every=min(chosen.val_every, max(1, steps // 10)),
        checkpoint_every=max(chosen.val_every, 500), warmup_steps=min(100, max(1, steps // 10)),
        unet=chosen.unet, diffusion=chosen.diffusion, model_id=Path(out_dir).name,
        name=name or Path(out_dir).name, target_name=target_name or "fluorescence",
        input_modality="transmitted light",
    )
    return config.with_changes(**changes) if changes else config
