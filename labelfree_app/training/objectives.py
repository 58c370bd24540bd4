"""The two model families as training objectives: how to build, what loss, how to predict.

``UNetObjective``: the fnet regressor with an MSE or L1 loss. ``DiffusionObjective``: the
conditional denoiser trained on eps- or v-prediction MSE with uniform timesteps; its validation
prediction is the mean (and variance) of a few DDIM samples. Given a trained U-Net package
(``DiffusionSettings.mean_model``) the denoiser learns the residual around that U-Net's prediction.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labelfree_app.core.welford import Welford
from labelfree_app.errors import TrainingDataError
from labelfree_app.models.architectures import build_network
from labelfree_app.training.config import DiffusionSettings, UNetSettings


class Objective(Protocol):
    kind: str
    arch_id: str
    mean_package: Any  # a U-Net package whose weights go into the network's ``mean_net``, or None

    def architecture_kwargs(self, in_channels: int) -> dict[str, Any]: ...

    def loss(self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...

    def predict(self, network: nn.Module, x: np.ndarray, device: torch.device,
                seed: int) -> tuple[np.ndarray, np.ndarray | None]: ...


def make_objective(model_type: str, dims: int, unet: UNetSettings, diffusion: DiffusionSettings,
                   input_normalization: str = "zscore") -> Objective:
    if model_type == "unet":
        return UNetObjective(unet, dims)
    if model_type == "diffusion":
        return DiffusionObjective(diffusion, dims, input_normalization)
    raise ValueError(f"unknown model type {model_type!r}; use 'unet' or 'diffusion'")


def build(objective: Objective, in_channels: int) -> nn.Module:
    network = build_network(objective.arch_id, objective.architecture_kwargs(in_channels))
    if objective.mean_package is not None:
        network.mean_net.load_state_dict(objective.mean_package.state_dict(), strict=True)
    return network


class UNetObjective:
    kind = "unet"
    arch_id = "fnet_unet"
    mean_package = None

    def __init__(self, settings: UNetSettings, dims: int) -> None:
        if settings.loss not in ("mse", "l1"):
            raise ValueError(f"unknown U-Net loss {settings.loss!r}; use 'mse' or 'l1'")
        self.settings = settings
        self.dims = dims

    def architecture_kwargs(self, in_channels: int) -> dict[str, Any]:
        return {"dims": self.dims, "in_channels": in_channels, "out_channels": 1,
                "depth": self.settings.depth, "base_channels": self.settings.base_channels}

    def loss(self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        prediction = network(x)
        if self.settings.loss == "l1":
            return F.l1_loss(prediction.float(), y)
        return F.mse_loss(prediction.float(), y)

    def predict(self, network: nn.Module, x: np.ndarray, device: torch.device,
                seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Whole-image forward of normalized ``x`` (C, *spatial), tiled when large."""
        from labelfree_app.core.tiling import predict_tiled

        multiple = int(getattr(network, "required_multiple", 1))
        tile = tuple(min(256 if self.dims == 2 else 128, _round_up(s, multiple)) for s in x.shape[1:])
        if self.dims == 3:
            tile = (min(32, _round_up(x.shape[1], multiple)), *tile[1:])
        halo = tuple(min(32, t // 4) for t in tile)

        def forward(tiles: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return network(torch.from_numpy(tiles).to(device)).float().cpu().numpy()

        out = predict_tiled(np.ascontiguousarray(x, dtype=np.float32), forward, tile_shape=tile,
                            overlap=halo, multiple_of=multiple, batch_size=1)
        return out, None


class DiffusionObjective:
    kind = "diffusion"
    arch_id = "cond_denoiser_unet"

    def __init__(self, settings: DiffusionSettings, dims: int, input_normalization: str = "zscore") -> None:
        from labelfree_app.models.diffusion.schedule import NoiseSchedule, check_prediction

        if settings.prediction not in ("eps", "v"):
            check_prediction(settings.prediction)
        self.settings = settings
        self.dims = dims
        self.schedule = NoiseSchedule.create(settings.schedule, settings.train_steps)
        self.mean_package = (_load_mean_model(settings.mean_model, dims, input_normalization)
                             if settings.mean_model else None)
        self.arch_id = "residual_cond_denoiser" if self.mean_package is not None else "cond_denoiser_unet"

    def architecture_kwargs(self, in_channels: int) -> dict[str, Any]:
        s = self.settings
        denoiser = {"base_channels": s.base_channels, "channel_mults": list(s.channel_mults),
                    "num_res_blocks": s.num_res_blocks, "attention_levels": list(s.attention_levels),
                    "dropout": s.dropout, "patch_size": s.patch_size}
        io = {"dims": self.dims, "in_channels": in_channels, "out_channels": 1}
        if self.mean_package is None:
            return {**io, **denoiser}
        unet = dict(self.mean_package.manifest.architecture.kwargs)
        if unet.get("in_channels", 1) != in_channels:
            raise TrainingDataError(
                f"The mean model {self.settings.mean_model} takes {unet.get('in_channels', 1)} input channel(s) but "
                f"the training inputs have {in_channels}; train the U-Net on the same kind of input first.")
        mean_net = {k: v for k, v in unet.items() if k not in ("dims", "in_channels", "out_channels")}
        return {**io, "mean_net": mean_net, "denoiser": denoiser, "schedule": s.schedule,
                "train_steps": s.train_steps, "prediction": s.prediction}

    def loss(self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # Noise and timesteps come from a CPU generator so a run is reproducible on any device.
        batch = y.shape[0]
        t = torch.randint(0, self.schedule.train_steps, (batch,), generator=generator)
        noise = torch.randn(tuple(y.shape), generator=generator).to(y.device)
        x_t = self.schedule.q_sample(y, t, noise)
        wanted = self.schedule.target(self.settings.prediction, y, noise, t)
        prediction = network(x_t, t.to(y.device), x)
        return F.mse_loss(prediction.float(), wanted)

    def predict(self, network: nn.Module, x: np.ndarray, device: torch.device,
                seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Mean and variance of ``val_samples`` samples (``val_sampling_steps`` DDIM steps)."""
        from labelfree_app.models.diffusion.samplers import sample as run_sampler

        s = self.settings
        multiple = int(getattr(network, "required_multiple", 1))
        padded, crop = _pad_to_multiple(x, multiple)
        cond = torch.from_numpy(padded).to(device)[None]
        generator = torch.Generator().manual_seed(int(seed))

        def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            t_batch = torch.as_tensor(t, dtype=torch.float32).reshape(-1).expand(x_t.shape[0])
            with torch.inference_mode():
                return network(x_t.to(device), t_batch.to(device), cond.expand(x_t.shape[0], *cond.shape[1:]))

        stats = Welford()
        for _ in range(s.val_samples):  # one at a time: memory stays that of a single sample
            final = None
            for record in run_sampler(s.sampler, model_fn, self.schedule, (1, 1, *padded.shape[1:]),
                                      steps=s.val_sampling_steps, prediction=s.prediction,
                                      generator=generator, eta=s.eta, device=device):
                final = record.x_t
            assert final is not None
            stats.update(final[0].float().cpu().numpy()[crop])
        return stats.mean.astype(np.float32), stats.variance.astype(np.float32)


def _load_mean_model(path: str, dims: int, input_normalization: str) -> Any:
    """The U-Net package whose prediction a residual diffusion model starts from, checked."""
    from labelfree_app.models.package import load_package

    package = load_package(path)
    manifest = package.manifest
    if manifest.kind != "unet" or manifest.architecture.id != "fnet_unet":
        raise TrainingDataError(f"The mean model {path} is not a U-Net model; give a U-Net package trained on "
                                "the same pairs.", path=path)
    if manifest.dims != dims or manifest.output.channels != 1:
        raise TrainingDataError(f"The mean model {path} is not a {dims}D model with one output channel.", path=path)
    if manifest.normalization.output is not None and manifest.normalization.output.method != "zscore":
        # LabelFree's stain units are a z-score map applied after the network, which predicts z-scores
        raise TrainingDataError(f"The mean model {path} maps its output back to other units than z-scored targets; "
                                "train it with LabelFree on the same pairs.", path=path)
    if manifest.normalization.input.method != input_normalization:
        raise TrainingDataError(
            f"The mean model {path} normalizes its input by {manifest.normalization.input.method}; train the "
            "residual model with the same input normalization.", path=path)
    return package


def _round_up(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def _pad_to_multiple(x: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Reflect-pad the spatial axes of (C, *spatial) up to a multiple; the crop that undoes it."""
    pads = [(0, 0)] + [(0, _round_up(s, multiple) - s) for s in x.shape[1:]]
    crop = (slice(None),) + tuple(slice(0, s) for s in x.shape[1:])
    if all(after == 0 for _, after in pads):
        return np.ascontiguousarray(x, dtype=np.float32), crop
    mode = "reflect" if all(after < s for (_, after), s in zip(pads[1:], x.shape[1:])) else "edge"
    return np.pad(x, pads, mode=mode).astype(np.float32), crop
