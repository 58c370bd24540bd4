"""Diffusion samplers as objects with a ``step()`` (as diffusers' schedulers), driven by one loop.

A sampler is built for a number of steps (``make_sampler``); its ``timesteps`` are those of
:func:`respace` (from train_steps - 1 down to 0) and ``step(model_output, t, sample)`` turns the
network output at timestep ``t`` into a :class:`StepResult` (the sample one step cleaner and the
clean-image estimate). Multistep solvers remember earlier estimates between calls; ``reset()``
forgets them. The last step goes from t = 0 to the clean estimate.

:func:`sample` is the one driving loop: a generator that calls ``model_fn(x_t, t)`` (a plain
callable returning eps, v or x0 as ``prediction`` says, ``t`` a (B,) int64 tensor in the training
timestep scale), steps the sampler, yields a :class:`StepRecord` after every network evaluation
and returns the final sample (also the last record's ``x_t``). Randomness is drawn on the CPU from
``generator`` and then moved to the device, so a seed gives the same samples on every device (up
to float arithmetic). Closing the generator stops it at once. Tensors in records are never
modified afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from labelfree_app.errors import InputShapeError, LabelFreeError
from labelfree_app.models.diffusion.schedule import NoiseSchedule, check_prediction
from labelfree_app.models.manifest import SAMPLERS

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Sampling = Generator["StepRecord", None, torch.Tensor]


@dataclass(frozen=True, eq=False)
class StepResult:
    """What one ``step()`` returns: the next sample and the clean-image estimate it used."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


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


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device,
           dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)


class Sampler:
    """Respaced timesteps, abar at each and at the next (1.0 after the last), and the x0 algebra.

    Subclasses implement :meth:`_update`; ``step`` is shared.
    """

    def __init__(self, schedule: NoiseSchedule, steps: int, prediction: str, clip_x0: float | None = None) -> None:
        check_prediction(prediction)
        self.schedule = schedule
        self.prediction = prediction
        self.clip_x0 = clip_x0
        self.timesteps = schedule.respace(int(steps))
        self.abar = schedule.alphas_cumprod[self.timesteps]
        self.abar_next = np.append(self.abar[1:], 1.0)
        self.lambdas = 0.5 * (np.log(self.abar) - np.log1p(-self.abar))  # log(alpha / sigma)
        self._index = {int(t): i for i, t in enumerate(self.timesteps)}

    def reset(self) -> None:
        """Forget any history kept between steps (multistep solvers)."""

    def step(self, model_output: torch.Tensor, t: int, sample: torch.Tensor,
             generator: torch.Generator | None = None) -> StepResult:
        """One step from ``sample`` at timestep ``t`` given the network output there."""
        i = self._index[int(t)]
        x0, eps = self.schedule.predict_x0_eps(model_output.to(sample.dtype), sample, float(t), self.prediction)
        if self.clip_x0 is not None:
            x0 = x0.clamp(-self.clip_x0, self.clip_x0)
            eps = self.schedule.eps_from_x0(x0, sample, float(t))
        return StepResult(self._update(i, sample, x0, eps, generator), x0)

    def _update(self, i: int, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor,
                generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def _abars(self, i: int) -> tuple[float, float]:
        return float(self.abar[i]), float(self.abar_next[i])


class DDPMSampler(Sampler):
    """Ancestral sampling with the posterior q(x_prev | x_t, x0) of the respaced process.

    The respaced betas are ``1 - abar_t / abar_prev`` (guided-diffusion's respace.py) and the
    variance is the posterior ("fixed small") variance; no noise is added at the last step.
    """

    def _update(self, i: int, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor,
                generator: torch.Generator | None) -> torch.Tensor:
        a_t, a_prev = self._abars(i)
        beta = 1.0 - a_t / a_prev
        x = beta * math.sqrt(a_prev) / (1.0 - a_t) * x0 + (1.0 - a_prev) * math.sqrt(1.0 - beta) / (1.0 - a_t) * x
        if i < len(self.timesteps) - 1:
            std = math.sqrt(beta * (1.0 - a_prev) / (1.0 - a_t))
            x = x + std * _randn(tuple(x.shape), generator, x.device, x.dtype)
        return x


class DDIMSampler(Sampler):
    """DDIM (Song et al. 2021): deterministic for ``eta = 0``; ``eta = 1`` matches DDPM's variance."""

    def __init__(self, schedule: NoiseSchedule, steps: int, prediction: str, clip_x0: float | None = None,
                 eta: float = 0.0) -> None:
        if eta < 0:
            raise LabelFreeError(f"The DDIM eta must be 0 or more, not {eta}; use 0 for deterministic sampling.")
        super().__init__(schedule, steps, prediction, clip_x0)
        self.eta = float(eta)

    def _update(self, i: int, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor,
                generator: torch.Generator | None) -> torch.Tensor:
        a_t, a_prev = self._abars(i)
        sigma = self.eta * math.sqrt((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev))
        x = math.sqrt(a_prev) * x0 + math.sqrt(max(1.0 - a_prev - sigma**2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * _randn(tuple(x.shape), generator, x.device, x.dtype)
        return x


class DPMSolverMultistep(Sampler):
    """DPM-Solver++ (Lu et al. 2022), multistep data-prediction form of ``order`` 2 (2M) or 3 (3M).

    Deterministic given the starting noise. The order is lowered where there are not enough
    earlier estimates yet, to at most 2 on the step before the last update and to 1 on the step
    into t = 0, the widest in lambda, where extrapolating overshoots (diffusers'
    ``lower_order_final``). The last step (t = 0 -> clean) returns the network's x0 estimate, as
    in k-diffusion's ``sample_dpmpp_2m``. With ``h = lambda_t - lambda_s`` the update is
    ``x_t = (sigma_t / sigma_s) x_s - alpha_t expm1(-h) D`` plus, at order 3, a curvature term.
    """

    def __init__(self, schedule: NoiseSchedule, steps: int, prediction: str, clip_x0: float | None = None,
                 order: int = 2) -> None:
        super().__init__(schedule, steps, prediction, clip_x0)
        if order not in (2, 3):
            raise ValueError(f"order must be 2 or 3, not {order}")
        self.order = order
        self._history: list[torch.Tensor] = []  # newest clean estimate first

    def reset(self) -> None:
        self._history = []

    def _update(self, i: int, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor,
                generator: torch.Generator | None) -> torch.Tensor:
        total = len(self.timesteps)
        self._history = [x0, *self._history][: self.order]
        if i == total - 1:
            return x0
        order = min(self.order, len(self._history), total - 1 - i)
        lam = self.lambdas
        h = float(lam[i + 1] - lam[i])
        a_s, a_t = self._abars(i)
        alpha_t = math.sqrt(a_t)
        ratio = math.sqrt((1.0 - a_t) / (1.0 - a_s))
        data = x0
        if order >= 2:
            r0 = float(lam[i] - lam[i - 1]) / h
        if order == 2:
            data = (1.0 + 0.5 / r0) * x0 - (0.5 / r0) * self._history[1]
        x = ratio * x - alpha_t * math.expm1(-h) * data
        if order == 3:
            r1 = float(lam[i - 1] - lam[i - 2]) / h
            d1_0 = (x0 - self._history[1]) / r0
            d1_1 = (self._history[1] - self._history[2]) / r1
            d2 = (d1_0 - d1_1) / (r0 + r1)
            d1 = d1_0 + r0 * d2
            x = x + alpha_t * (math.expm1(-h) / h + 1.0) * d1 - alpha_t * ((math.expm1(-h) + h) / h**2 - 0.5) * d2
        return x


def make_sampler(name: str, schedule: NoiseSchedule, *, steps: int, prediction: str,
                 clip_x0: float | None = None, eta: float = 0.0) -> Sampler:
    """The sampler ``name`` (one of :data:`SAMPLERS`) for ``steps`` steps; ``eta`` is DDIM's only."""
    if name == "ddpm":
        return DDPMSampler(schedule, steps, prediction, clip_x0)
    if name == "ddim":
        return DDIMSampler(schedule, steps, prediction, clip_x0, eta=eta)
    if name in ("dpmpp2m", "dpmpp3m"):
        return DPMSolverMultistep(schedule, steps, prediction, clip_x0, order=2 if name == "dpmpp2m" else 3)
    raise LabelFreeError(f"Unknown sampler '{name}'; choose one of: {', '.join(SAMPLERS)}.")


# --- the driving loop ----------------------------------------------------------------------------
def sample(
    name: str | Sampler, model_fn: ModelFn, schedule: NoiseSchedule, shape: Sequence[int], *, steps: int,
    prediction: str, generator: torch.Generator | None = None, device: torch.device | str = "cpu",
    clip_x0: float | None = None, noise: torch.Tensor | None = None, eta: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> Sampling:
    """The sampler ``name`` (or a built :class:`Sampler`) as a generator of step records.

    Settings are checked here, before the first step; ``eta`` is used by DDIM only.
    """
    sampler = name if isinstance(name, Sampler) else make_sampler(
        name, schedule, steps=steps, prediction=prediction, clip_x0=clip_x0, eta=eta)
    if noise is not None and tuple(noise.shape) != tuple(shape):
        raise InputShapeError(
            f"The starting noise has shape {tuple(noise.shape)} but the sample shape is {tuple(shape)}."
        )
    return _drive(sampler, model_fn, tuple(shape), generator, torch.device(device), noise, dtype)


def _drive(sampler: Sampler, model_fn: ModelFn, shape: tuple[int, ...], generator: torch.Generator | None,
           device: torch.device, noise: torch.Tensor | None, dtype: torch.dtype) -> Sampling:
    x = None
    sampler.reset()
    try:
        x = noise.detach().to(device=device, dtype=dtype) if noise is not None else _randn(shape, generator, device, dtype)
        total = len(sampler.timesteps)
        for i, t in enumerate(sampler.timesteps):
            with torch.no_grad():
                out = model_fn(x, torch.full((shape[0],), int(t), dtype=torch.long, device=device))
                if out.shape != x.shape:
                    raise InputShapeError(
                        f"The denoiser returned shape {tuple(out.shape)} for a sample of shape {tuple(x.shape)}; "
                        "the model's output channels do not match its manifest."
                    )
                result = sampler.step(out, int(t), x, generator)
            out = None
            x = result.prev_sample
            yield StepRecord(i, total, int(t), x, result.pred_original_sample)
            result = None  # type: ignore[assignment]
        return x
    finally:
        x = None
        sampler.reset()


def ddpm_sample(model_fn: ModelFn, schedule: NoiseSchedule, shape: Sequence[int], **kwargs: object) -> Sampling:
    """:func:`sample` with the DDPM sampler."""
    return sample("ddpm", model_fn, schedule, shape, **kwargs)  # type: ignore[arg-type]


def ddim_sample(model_fn: ModelFn, schedule: NoiseSchedule, shape: Sequence[int], **kwargs: object) -> Sampling:
    """:func:`sample` with the DDIM sampler (``eta`` as a keyword)."""
    return sample("ddim", model_fn, schedule, shape, **kwargs)  # type: ignore[arg-type]


def dpmpp_2m_sample(model_fn: ModelFn, schedule: NoiseSchedule, shape: Sequence[int], **kwargs: object) -> Sampling:
    """:func:`sample` with DPM-Solver++ 2M."""
    return sample("dpmpp2m", model_fn, schedule, shape, **kwargs)  # type: ignore[arg-type]


def sample_loop(name: str | Sampler, model_fn: ModelFn, schedule: NoiseSchedule, shape: Sequence[int],
                **kwargs: object) -> torch.Tensor:
    """The final sample of :func:`sample` (like guided-diffusion's ``p_sample_loop``)."""
    return run_to_end(sample(name, model_fn, schedule, shape, **kwargs))  # type: ignore[arg-type]


def run_to_end(records: Sampling) -> torch.Tensor:
    """Drive a sampler to its end and return the final sample."""
    final = None
    for record in records:
        final = record.x_t
    assert final is not None
    return final
