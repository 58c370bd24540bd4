"""Fine-tuning: start a training run from an installed model's weights and normalization.

``parent_for(config)`` opens the model named by ``config.init_from`` (an installed id or a
package path); ``finetune_config`` adopts its network size and input normalization and picks a
fine-tuning schedule unless the user set one: a fifth of the learning rate, a short warm-up and
early stopping on the validation images. ``initial_weights`` adapts the parent's weights to the
new input: the same channel count, or, for a z-stack fed as channels to a single-plane parent,
the first convolution spread evenly over the planes (each plane then starts as the parent sees
one plane).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from labelfree_app.errors import LabelFreeError, TrainingDataError
from labelfree_app.training.config import DiffusionSettings, TrainConfig

LR_FACTOR = 0.2  # of the from-scratch learning rate
WARMUP_STEPS = 50
PATIENCE = 4  # validations without improvement


@dataclass(frozen=True)
class Parent:
    """The model a run starts from, as the model card records it."""

    package: Any
    id: str
    version: str
    sha256: str
    origin: str
    license: str = ""
    attribution: str = ""

    def record(self) -> dict[str, str]:
        """The card's ``init_from``: which model, and the terms it passes on (``training.licensing``)."""
        return {"id": self.id, "version": self.version, "sha256": self.sha256, "path": self.origin,
                "license": self.license, "attribution": self.attribution}


def parent_for(config: TrainConfig) -> Parent | None:
    """The package named by ``config.init_from`` (None when the run starts from scratch)."""
    if not config.init_from:
        return None
    from labelfree_app.models.registry import ModelRegistry

    try:
        package = ModelRegistry().resolve(config.init_from)
        package.verify()
    except LabelFreeError as exc:
        raise TrainingDataError(f"Cannot start from '{config.init_from}': {exc}") from exc
    manifest = package.manifest
    return Parent(package, manifest.id, manifest.version, manifest.weights.sha256, str(package.origin),
                  manifest.license, manifest.attribution)


def finetune_config(config: TrainConfig, parent: Parent) -> TrainConfig:
    """``config`` with the parent's model type, network size and normalization, and a fine-tuning schedule."""
    manifest = parent.package.manifest
    kwargs = dict(manifest.architecture.kwargs)
    if manifest.dims != config.dims:
        raise TrainingDataError(
            f"The model {parent.id} is {manifest.dims}D but this run trains a {config.dims}D model; start from a "
            f"{config.dims}D model or from scratch.")
    if manifest.architecture.id == "fnet_unet":
        changes: dict[str, Any] = {"model_type": "unet", "unet": replace(
            config.unet, depth=int(kwargs["depth"]), base_channels=int(kwargs["base_channels"]))}
    elif manifest.architecture.id == "cond_denoiser_unet":
        d = manifest.diffusion
        changes = {"model_type": "diffusion", "diffusion": replace(
            config.diffusion if config.model_type == "diffusion" else DiffusionSettings(),
            base_channels=int(kwargs["base_channels"]), channel_mults=tuple(kwargs["channel_mults"]),
            num_res_blocks=int(kwargs.get("num_res_blocks", 1)),
            attention_levels=tuple(kwargs.get("attention_levels", ())), dropout=float(kwargs.get("dropout", 0.0)),
            patch_size=int(kwargs.get("patch_size", 1)), schedule=d.schedule, train_steps=d.train_steps,
            prediction=d.prediction, mean_model=None)}
    else:
        raise TrainingDataError(
            f"The model {parent.id} is a {manifest.architecture.id} network, which LabelFree cannot fine-tune; "
            "start from a U-Net or a plain diffusion model (or from scratch).")
    if changes["model_type"] != config.model_type:
        raise TrainingDataError(
            f"The model {parent.id} is a {manifest.kind} model but this run trains a {config.model_type} model; "
            f"choose model type {manifest.kind} or another model to start from.")
    changes["input_normalization"] = manifest.normalization.input.method
    if config.lr is None:
        changes["lr"] = LR_FACTOR * config.resolved_lr
    changes["warmup_steps"] = min(config.warmup_steps, WARMUP_STEPS)
    if config.early_stop_patience <= 0:
        changes["early_stop_patience"] = PATIENCE
    return replace(config, **changes)


def initial_weights(parent: Parent, network: torch.nn.Module, *, z_as_channels: bool) -> dict[str, torch.Tensor]:
    """The parent's weights shaped for ``network`` (refused with a sentence when they cannot fit)."""
    weights = parent.package.state_dict()
    wanted = network.state_dict()
    if set(weights) != set(wanted):
        raise TrainingDataError(
            f"The weights of {parent.id} do not fit this network (different layers); start from a model of the "
            "same architecture or from scratch.")
    parent_in = int(parent.package.manifest.input.channels)
    adapted = {}
    for key, value in weights.items():
        shape = tuple(wanted[key].shape)
        if tuple(value.shape) == shape:
            adapted[key] = value
        elif (z_as_channels and parent_in == 1 and value.ndim >= 3 and value.shape[1] == 1
              and value.shape[0] == shape[0] and value.shape[2:] == shape[2:]):
            adapted[key] = value.repeat(1, shape[1], *([1] * (value.ndim - 2))) / shape[1]
        else:
            raise TrainingDataError(
                f"The model {parent.id} takes {parent_in} input channel(s) but these training inputs give "
                f"{int(getattr(network, 'in_channels', 0))}; start from a model made for this kind of input or from "
                "scratch.")
    return adapted

