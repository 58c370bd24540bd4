"""Diffusion samplers as generators: DDPM (ancestral), DDIM (eta) and DPM-Solver++ 2M.

Each sampler yields a :class:`StepRecord` after every network evaluation and returns the final
sample (also the last record's ``x_t``). ``model_fn(x_t, t)`` is a plain callable returning the
network output (eps, v or x0 as ``prediction`` says) with ``t`` a (B,) int64 tensor in the
training timestep scale; the condition, tiling and batching are the caller's business.

All samplers run ``steps`` network evaluations on the timesteps of :func:`respace` (from
train_steps - 1 down to 0); the last step goes from t = 0 to the clean estimate. Randomness is
drawn on the CPU from ``generator`` and then moved to ``device``, so a seed gives the same
samples on every device (up to float arithmetic). Closing a sampler (``gen.close()``) stops it
at once. Tensors in records are never modified afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Generator, Sequence

import numpy as np
import torch

from labelfree_app.errors import InputShapeError, LabelFreeError
from labelfree_app.models.diffusion.schedule import NoiseSchedule, check_prediction
from labelfree_app.models.manifest import SAMPLERS

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Sampling = Generator["StepRecord", None, torch.Tensor]


@dataclass(frozen=True, eq=False)
class StepRecord:
    """One sampling step: the network ran at timestep ``t``; ``x_t`` is the sample after the step.

    ``index`` counts 0..total-1; ``pred_x0`` is the network's clean-image estimate at this step.
    The last record's ``x_t`` is the final sample.
    """

    index: int
    total: int
    t: int
    x_t: torch.Tensor
    pred_x0: torch.Tensor

    @property
    def is_last(self) -> bool:
        return self.index == self.total - 1


@dataclass(frozen=True)
class _Plan:
    """Respaced timesteps with abar at each and at the next (1.0 after the last: clean data)."""

    timesteps: np.ndarray
    abar: np.ndarray
    abar_next: np.ndarray

    @classmethod
    def make(cls, schedule: NoiseSchedule, steps: int) -> "_Plan":
        timesteps = schedule.respace(steps)
        abar = schedule.alphas_cumprod[timesteps]
        return cls(timesteps, abar, np.append(abar[1:], 1.0))


def _initial_noise(
    shape: Sequence[int], generator: torch.Generator | None, device: torch.device,
    dtype: torch.dtype, noise: torch.Tensor | None,
) -> torch.Tensor:
    if noise is not None:
        return noise.detach().to(device=device, dtype=dtype)
    return _randn(tuple(shape), generator, device, dtype)


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device,
           dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)


@torch.no_grad()
def _denoise(
    model_fn: ModelFn, schedule: NoiseSchedule, x: torch.Tensor, t: int, prediction: str,
    clip_x0: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, eps) estimated by the network at ``x`` and timestep ``t``."""
    t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    out = model_fn(x, t_batch)
    if out.shape != x.shape:
        raise InputShapeError(
            f"The denoiser returned shape {tuple(out.shape)} for a sample of shape {tuple(x.shape)}; "
            "the model's output channels do not match its manifest."
        )
    x0, eps = schedule.predict_x0_eps(out.to(x.dtype), x, float(t), prediction)
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
        eps = schedule.eps_from_x0(x0, x, float(t))
    return x0, eps


def _validated(schedule: NoiseSchedule, steps: int, prediction: str, shape: Sequence[int],
               noise: torch.Tensor | None) -> _Plan:
    check_prediction(prediction)
    if noise is not None and tuple(noise.shape) != tuple(shape):
        raise InputShapeError(
            f"The starting noise has shape {tuple(noise.shape)} but the sample shape is {tuple(shape)}."
        )
    return _Plan.make(schedule, int(steps))


# --- DDPM ----------------------------------------------------------------------------------------
def ddpm_sample(
    model_fn: ModelFn, schedule: NoiseSchedule, shape: Sequence[int], *, steps: int, prediction: str,
    generator: torch.Generator | None = None, device: torch.device | str = "cpu",
    clip_x0: float | None = None, noise: torch.Tensor | None = None, dtype: torch.dtype = torch.float32,
) -> Sampling:
    """Ancestral sampling with the posterior q(x_prev | x_t, x0) of the respaced process.

    The respaced betas are ``1 - abar_t / abar_prev`` (guided-diffusion's respace.py) and the
    variance is the posterior ("fixed small") variance; no noise is added at the last step.
    """
    plan = _validated(schedule, steps, prediction, shape, noise)
    return _ddpm(model_fn, schedule, plan, shape, prediction, generator, torch.device(device), clip_x0, noise, dtype)


def _ddpm(model_fn: ModelFn, schedule: NoiseSchedule, plan: _Plan, shape: Sequence[int], prediction: str,
          generator: torch.Generator | None, device: torch.device, clip_x0: float | None,
          noise: torch.Tensor | None, dtype: torch.dtype) -> Sampling:
    x = pred_x0 = None
    try:
        x = _initial_noise(shape, generator, device, dtype, noise)
        total = len(plan.timesteps)
        for i, t in enumerate(plan.timesteps):
            pred_x0, _ = _denoise(model_fn, schedule, x, int(t), prediction, clip_x0)
            a_t, a_prev = float(plan.abar[i]), float(plan.abar_next[i])
            beta = 1.0 - a_t / a_prev
            coef_x0 = beta * math.sqrt(a_prev) / (1.0 - a_t)
            coef_xt = (1.0 - a_prev) * math.sqrt(1.0 - beta) / (1.0 - a_t)
            x = coef_x0 * pred_x0 + coef_xt * x
            if i < total - 1:
                std = math.sqrt(beta * (1.0 - a_prev) / (1.0 - a_t))
                x = x + std * _randn(tuple(x.shape), generator, device, dtype)
            yield StepRecord(i, total, int(t), x, pred_x0)
        return x
    finally:
        x = pred_x0 = None


# --- DDIM ----------------------------------------------------------------------------------------
def ddim_sample(
    model_fn: ModelFn, schedule: NoiseSchedule, shape: Sequence[int], *, steps: int, prediction: str,
    generator: torch.Generator | None = None, device: torch.device | str = "cpu",
    clip_x0: float | None = None, noise: torch.Tensor | None = None, eta: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> Sampling:
    """DDIM (Song et al. 2021): deterministic for ``eta = 0``; ``eta = 1`` matches DDPM's variance."""
    plan = _validated(schedule, steps, prediction, shape, noise)
    if eta < 0:
        raise LabelFreeError(f"The DDIM eta must be 0 or more, not {eta}; use 0 for deterministic sampling.")
    return _ddim(model_fn, schedule, plan, shape, prediction, generator, torch.device(device),
                 clip_x0, noise, float(eta), dtype)


def _ddim(model_fn: ModelFn, schedule: NoiseSchedule, plan: _Plan, shape: Sequence[int], prediction: str,
          generator: torch.Generator | None, device: torch.device, clip_x0: float | None,
          noise: torch.Tensor | None, eta: float, dtype: torch.dtype) -> Sampling:
    x = pred_x0 = eps = None
    try:
        x = _initial_noise(shape, generator, device, dtype, noise)
        total = len(plan.timesteps)
        for i, t in enumerate(plan.timesteps):
            pred_x0, eps = _denoise(model_fn, schedule, x, int(t), prediction, clip_x0)
            a_t, a_prev = float(plan.abar[i]), float(plan.abar_next[i])
            sigma = eta * math.sqrt((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev))
            direction = math.sqrt(max(1.0 - a_prev - sigma**2, 0.0))
            x = math.sqrt(a_prev) * pred_x0 + direction * eps
            if sigma > 0:
                x = x + sigma * _randn(tuple(x.shape), generator, device, dtype)
            eps = None
            yield StepRecord(i, total, int(t), x, pred_x0)
        return x
    finally:
        x = pred_x0 = eps = None


# --- DPM-Solver++ 2M ----------------------------------------------------------------------------
def dpmpp_2m_sample(
    model_fn: ModelFn, schedule: NoiseSchedule, shape: Sequence[int], *, steps: int, prediction: str,
    generator: torch.Generator | None = None, device: torch.device | str = "cpu",
    clip_x0: float | None = None, noise: torch.Tensor | None = None, dtype: torch.dtype = torch.float32,
) -> Sampling:
    """DPM-Solver++ 2M (Lu et al. 2022), multistep data-prediction form; deterministic given noise.

    Second order except on the first step and on the step into t = 0 (first order there); the
    last step (t = 0 -> clean) returns the network's x0 estimate, as in k-diffusion's
    ``sample_dpmpp_2m``. With one previous estimate the step is the data-prediction multistep
    update ``x_t = (sigma_t / sigma_s) x_s - alpha_t expm1(-h) D``,
    ``D = (1 + 1/2r) x0_s - (1/2r) x0_prev``, ``r = h_prev / h``.
    """
    plan = _validated(schedule, steps, prediction, shape, noise)
    return _dpmpp_2m(model_fn, schedule, plan, shape, prediction, generator, torch.device(device),
                     clip_x0, noise, dtype)


def _dpmpp_2m(model_fn: ModelFn, schedule: NoiseSchedule, plan: _Plan, shape: Sequence[int], prediction: str,
              generator: torch.Generator | None, device: torch.device, clip_x0: float | None,
              noise: torch.Tensor | None, dtype: torch.dtype) -> Sampling:
    x = pred_x0 = previous_x0 = None
    # lambda = log(alpha / sigma), half the log-SNR.
    lambdas = 0.5 * (np.log(plan.abar) - np.log1p(-plan.abar))
    try:
        x = _initial_noise(shape, generator, device, dtype, noise)
        total = len(plan.timesteps)
        for i, t in enumerate(plan.timesteps):
            pred_x0, _ = _denoise(model_fn, schedule, x, int(t), prediction, clip_x0)
            if i == total - 1:
                x = pred_x0
            else:
                a_s, a_t = float(plan.abar[i]), float(plan.abar_next[i])
                h = float(lambdas[i + 1] - lambdas[i])
                data = pred_x0
                # Second order needs a previous estimate; the step into t = 0 is the widest in
                # lambda, where extrapolating overshoots (diffusers' lower_order_final).
                if previous_x0 is not None and i < total - 2:
                    r = float(lambdas[i] - lambdas[i - 1]) / h
                    data = (1.0 + 0.5 / r) * pred_x0 - (0.5 / r) * previous_x0
                sigma_ratio = math.sqrt((1.0 - a_t) / (1.0 - a_s))
                x = sigma_ratio * x - math.sqrt(a_t) * math.expm1(-h) * data
                data = None
            previous_x0 = pred_x0
            yield StepRecord(i, total, int(t), x, pred_x0)
        return x
    finally:
        x = pred_x0 = previous_x0 = None


# --- by name ------------------------------------------------------------------------------------
def sample(
    name: str, model_fn: ModelFn, schedule: NoiseSchedule, shape: Sequence[int], *, steps: int,
    prediction: str, generator: torch.Generator | None = None, device: torch.device | str = "cpu",
    clip_x0: float | None = None, noise: torch.Tensor | None = None, eta: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> Sampling:
    """The sampler ``name`` ("ddpm" | "ddim" | "dpmpp2m") as a generator of step records.

    ``eta`` is used by DDIM only.
    """
    common = dict(steps=steps, prediction=prediction, generator=generator, device=device,
                  clip_x0=clip_x0, noise=noise, dtype=dtype)
    if name == "ddpm":
        return ddpm_sample(model_fn, schedule, shape, **common)
    if name == "ddim":
        return ddim_sample(model_fn, schedule, shape, eta=eta, **common)
    if name == "dpmpp2m":
        return dpmpp_2m_sample(model_fn, schedule, shape, **common)
    raise LabelFreeError(f"Unknown sampler '{name}'; choose one of: {', '.join(SAMPLERS)}.")


def run_to_end(records: Sampling) -> torch.Tensor:
    """Drive a sampler to its end and return the final sample."""
    while True:
        try:
            next(records)
        except StopIteration as stop:
            return stop.value


def sample_loop(name: str, model_fn: ModelFn, schedule: NoiseSchedule, shape: Sequence[int],
                **kwargs: object) -> torch.Tensor:
    """The final sample of :func:`sample` (like guided-diffusion's ``p_sample_loop``)."""
    return run_to_end(sample(name, model_fn, schedule, shape, **kwargs))  # type: ignore[arg-type]
