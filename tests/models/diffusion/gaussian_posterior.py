"""Exact denoisers for data whose distribution is known in closed form (test helpers).

For x0 ~ N(mu, s^2) per pixel and x_t = sqrt(a) x0 + sqrt(1 - a) eps, the optimal denoiser is
E[x0 | x_t] = mu + sqrt(a) s^2 / (a s^2 + 1 - a) (x_t - sqrt(a) mu); eps and v follow from it.
A mixture of Gaussians has a responsibility-weighted sum of such terms.
"""

from __future__ import annotations

from typing import Callable

import torch

from labelfree_app.models.diffusion.schedule import NoiseSchedule

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _abar(schedule: NoiseSchedule, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return schedule.alpha_bar(t).reshape(-1, *([1] * (like.dim() - 1))).to(like.device, torch.float64)


def _as_output(x0: torch.Tensor, x: torch.Tensor, a: torch.Tensor, prediction: str) -> torch.Tensor:
    eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
    outputs = {"eps": eps, "x0": x0, "v": a.sqrt() * eps - (1 - a).sqrt() * x0}
    return outputs[prediction]


def gaussian_denoiser(
    schedule: NoiseSchedule, mu: torch.Tensor | float, s: float, prediction: str, calls: list | None = None
) -> ModelFn:
    """The exact network output for Gaussian data N(mu, s^2); ``calls`` records each ``t``."""

    def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if calls is not None:
            calls.append(t.clone())
        x = x_t.to(torch.float64)
        a = _abar(schedule, t, x)
        m = torch.as_tensor(mu, dtype=torch.float64, device=x.device)
        x0 = m + a.sqrt() * s**2 / (a * s**2 + 1 - a) * (x - a.sqrt() * m)
        return _as_output(x0, x, a, prediction).to(x_t.dtype)

    return model_fn


def mixture_denoiser(
    schedule: NoiseSchedule, weights: list[float], means: list[float], stds: list[float], prediction: str
) -> ModelFn:
    """The exact network output for data drawn from a mixture of 1D Gaussians (per pixel)."""
    def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = x_t.to(torch.float64)
        w, m, sd = (torch.tensor(v, dtype=torch.float64, device=x.device) for v in (weights, means, stds))
        a = _abar(schedule, t, x)
        ak, xk = a.unsqueeze(-1), x.unsqueeze(-1)
        var = ak * sd**2 + 1 - ak
        log_resp = torch.log(w) - 0.5 * torch.log(var) - 0.5 * (xk - ak.sqrt() * m) ** 2 / var
        x0_given_k = m + ak.sqrt() * sd**2 / var * (xk - ak.sqrt() * m)
        x0 = (torch.softmax(log_resp, dim=-1) * x0_given_k).sum(-1)
        return _as_output(x0, x, a, prediction).to(x_t.dtype)

    return model_fn
