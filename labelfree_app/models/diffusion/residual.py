"""Residual diffusion: a U-Net gives the mean, the denoiser samples what the U-Net got wrong.

As in CorrDiff (Mardani et al. 2023): with ``mu = unet(cond)`` the target is written
``y = mu + r`` and diffusion models the residual ``r`` given the condition and ``mu``. On small
data the mean of a few samples then starts from the regression's accuracy, and the samples
spread where the residual is uncertain, which is what the variance map should show.

The wrapper is invisible to the samplers: it takes and returns the quantities of the target
space. With ``x_t = a y + s eps`` the residual's noisy value is ``r_t = x_t - a mu`` and the
noise is the same, so eps is unchanged, ``v_y = v_r - s mu`` and ``x0_y = mu + x0_r``.
The U-Net is frozen: it is trained first, on its own, and only the denoiser learns here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from labelfree_app.models.diffusion.denoiser import ConditionalDenoiser
from labelfree_app.models.diffusion.schedule import NoiseSchedule, check_prediction
from labelfree_app.models.unet import UNet


class ResidualDenoiser(nn.Module):
    """``forward(x_t, t, cond)`` like :class:`ConditionalDenoiser`, around a frozen mean U-Net."""

    def __init__(self, dims: int = 2, in_channels: int = 1, out_channels: int = 1, *,
                 mean_net: dict[str, Any], denoiser: dict[str, Any], schedule: str = "cosine",
                 train_steps: int = 1000, prediction: str = "v") -> None:
        super().__init__()
        check_prediction(prediction)
        unet_kwargs = {**mean_net, "dims": dims, "in_channels": in_channels, "out_channels": out_channels}
        self.mean_net = UNet(**unet_kwargs)
        self.denoiser = ConditionalDenoiser(dims=dims, in_channels=in_channels + out_channels,
                                            out_channels=out_channels, **denoiser)
        for param in self.mean_net.parameters():
            param.requires_grad_(False)
        self.schedule = NoiseSchedule.create(schedule, train_steps)
        self.prediction = prediction
        self.dims = dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.required_multiple = math.lcm(self.mean_net.required_multiple, self.denoiser.required_multiple)
        self.mean_net.eval()

    def train(self, mode: bool = True) -> ResidualDenoiser:
        super().train(mode)
        self.mean_net.eval()  # frozen: its batch-norm statistics must not follow the training batches
        return self

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | float, cond: torch.Tensor) -> torch.Tensor:
        return self.denoise(x_t, t, cond, self.mean(cond).to(x_t.dtype))

    @torch.no_grad()
    def mean(self, cond: torch.Tensor) -> torch.Tensor:
        """The U-Net's prediction mu: it depends on the condition only, so a sampler can compute it once."""
        return self.mean_net(cond)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor | float, cond: torch.Tensor, mu: torch.Tensor,
                denoiser: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                ) -> torch.Tensor:
        """The network output in the target space given ``mu = mean(cond)``; ``denoiser`` replaces the
        residual network (e.g. by its ONNX Runtime export)."""
        t = torch.as_tensor(t, device=x_t.device)
        if t.dim() == 0:
            t = t.expand(x_t.shape[0])
        a, s = self.schedule.sqrt_terms(t, x_t)
        run = denoiser or self.denoiser
        out = run(x_t - a * mu, t, torch.cat([cond.to(x_t.dtype), mu], dim=1))
        if self.prediction == "v":
            return out - s * mu
        if self.prediction == "x0":
            return out + mu
        return out  # eps is the same in both spaces
