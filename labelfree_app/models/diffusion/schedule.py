"""The noise schedule: betas, cumulative alphas, and the algebra between x0, eps, v and x_t.

The schedule is a value separate from the network (as in diffusers' schedulers). Coefficients
are kept in float64 on the CPU and cast to the tensor's dtype and device only when used, so
results do not depend on the device (MPS has no float64).

Conventions: ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` and
``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0`` (Salimans & Ho 2022), t in 0..train_steps-1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from labelfree_app.errors import LabelFreeError, ManifestError

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("eps", "v", "x0")


def linear_betas(train_steps: int) -> np.ndarray:
    """guided-diffusion's linear betas: 1e-4..0.02 for 1000 steps, scaled for other lengths."""
    scale = 1000.0 / train_steps
    return np.linspace(scale * 1e-4, scale * 0.02, train_steps, dtype=np.float64)


def cosine_betas(train_steps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal's cosine schedule: abar(t) = cos^2((t/T + s)/(1 + s) * pi/2)."""

    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / train_steps) / alpha_bar(i / train_steps), max_beta)
        for i in range(train_steps)
    ]
    return np.asarray(betas, dtype=np.float64)


def respace(train_steps: int, steps: int) -> np.ndarray:
    """``steps`` distinct descending timesteps from ``train_steps - 1`` down to 0 (int64).

    Evenly spaced and rounded ("linspace" spacing, as in diffusers): the first step is always
    the noisiest trained timestep and the last is t = 0, so every sampler ends on clean data;
    ``steps == train_steps`` gives every timestep. One step gives ``[train_steps - 1]``.
    """
    if not 1 <= steps <= train_steps:
        raise LabelFreeError(
            f"The number of sampling steps must be between 1 and {train_steps}, but {steps} was asked; "
            "choose a step count in that range (10-50 is typical)."
        )
    if steps == 1:
        return np.array([train_steps - 1], dtype=np.int64)
    grid = np.round(np.linspace(0, train_steps - 1, steps)).astype(np.int64)
    return grid[::-1].copy()


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """Betas and cumulative alphas of a diffusion process; build with :meth:`create`."""

    kind: str
    betas: np.ndarray
    alphas_cumprod: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        betas = np.asarray(self.betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size == 0 or not np.all((betas > 0) & (betas < 1)):
            raise ValueError("betas must be a non-empty 1D array in (0, 1)")
        betas.setflags(write=False)
        abar = np.cumprod(1.0 - betas)
        abar.setflags(write=False)
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "alphas_cumprod", abar)

    @classmethod
    def create(cls, kind: str = "cosine", train_steps: int = 1000) -> NoiseSchedule:
        """The ``"linear"`` or ``"cosine"`` schedule with ``train_steps`` timesteps."""
        if kind not in SCHEDULES:
            raise ManifestError(
                f"The model asks for an unknown noise schedule '{kind}' (field 'diffusion.schedule'); "
                f"use one of: {', '.join(SCHEDULES)}.",
                field="diffusion.schedule",
            )
        if int(train_steps) < 2:
            raise ManifestError(
                f"The model's 'diffusion.train_steps' must be at least 2, not {train_steps}.",
                field="diffusion.train_steps",
            )
        betas = linear_betas(int(train_steps)) if kind == "linear" else cosine_betas(int(train_steps))
        return cls(kind=kind, betas=betas)

    @property
    def train_steps(self) -> int:
        return int(self.betas.size)

    def respace(self, steps: int) -> np.ndarray:
        """Descending sampling timesteps for ``steps`` steps (see :func:`respace`)."""
        return respace(self.train_steps, steps)

    # --- coefficients at timesteps ----------------------------------------------------------
    def alpha_bar(self, t: torch.Tensor | np.ndarray | float) -> torch.Tensor:
        """abar at timesteps ``t`` as float64 on the CPU; fractional t interpolates log(abar)."""
        if torch.is_tensor(t):
            t64 = t.detach().to("cpu", torch.float64)
        else:
            t64 = torch.from_numpy(np.asarray(t, dtype=np.float64))
        t64 = t64.clamp(0, self.train_steps - 1)
        log_abar = torch.from_numpy(np.log(self.alphas_cumprod))
        lo = t64.floor().long()
        hi = torch.clamp(lo + 1, max=self.train_steps - 1)
        frac = t64 - lo.to(torch.float64)
        return torch.exp(log_abar[lo] * (1 - frac) + log_abar[hi] * frac)

    def _coef(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Per-sample coefficients (B,) shaped to broadcast over ``like`` (B, C, *spatial)."""
        shape = (-1,) + (1,) * (like.dim() - 1) if values.dim() == 1 else values.shape
        return values.reshape(shape).to(device=like.device, dtype=like.dtype)

    def sqrt_terms(self, t: torch.Tensor | float, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sqrt(abar_t) and sqrt(1 - abar_t), shaped to broadcast over ``like``."""
        abar = self.alpha_bar(t)
        return self._coef(abar.sqrt(), like), self._coef((1 - abar).sqrt(), like)

    # --- training targets --------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Noised data ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise`` (t: (B,) or scalar)."""
        a, s = self.sqrt_terms(t, x0)
        return a * x0 + s * noise

    def v_target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The v-prediction target ``sqrt(abar_t) noise - sqrt(1 - abar_t) x0``."""
        a, s = self.sqrt_terms(t, x0)
        return a * noise - s * x0

    def target(self, prediction: str, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What a network trained for ``prediction`` ("eps" | "v" | "x0") should output."""
        check_prediction(prediction)
        if prediction == "eps":
            return noise
        if prediction == "v":
            return self.v_target(x0, noise, t)
        return x0

    def snr(self, t: torch.Tensor | float) -> torch.Tensor:
        """Signal-to-noise ratio abar / (1 - abar) at ``t`` (float64, CPU)."""
        abar = self.alpha_bar(t)
        return abar / (1 - abar)

    # --- inverting the network output --------------------------------------------------------
    def predict_x0_eps(
        self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | float, prediction: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The (x0, eps) implied by a network output of kind ``prediction`` at ``x_t``."""
        check_prediction(prediction)
        a, s = self.sqrt_terms(t, x_t)
        if prediction == "eps":
            eps = model_output
            return (x_t - s * eps) / a, eps
        if prediction == "v":
            return a * x_t - s * model_output, s * x_t + a * model_output
        x0 = model_output
        return x0, (x_t - a * x0) / s

    def eps_from_x0(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """The noise implied by a (for example clipped) x0 estimate at ``x_t``."""
        a, s = self.sqrt_terms(t, x_t)
        return (x_t - a * x0) / s


def check_prediction(prediction: str) -> None:
    """Raise a :class:`ManifestError` unless ``prediction`` is "eps", "v" or "x0"."""
    if prediction not in PREDICTIONS:
        raise ManifestError(
            f"The model says its network predicts '{prediction}' (field 'diffusion.prediction'); "
            f"use one of: {', '.join(PREDICTIONS)}.",
            field="diffusion.prediction",
        )
