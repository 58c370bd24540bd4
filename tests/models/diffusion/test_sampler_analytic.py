"""The sampler maths on data with a known distribution and its exact denoiser.

With the optimal denoiser for x0 ~ N(mu, s^2), a correct sampler returns samples with mean mu
and variance s^2, up to its discretisation error, which must shrink as steps grow. Observed
variance ratios on the cosine schedule (32k pixels, statistical sd about 0.008): DDPM 1000 steps
1.006, 250 steps 0.96, 25 steps 0.70 (the posterior "fixed small" variance under-disperses
with few steps); DDIM eta=0 250 steps 0.98, 25 steps 0.83 (first order); DPM-Solver++ 2M
20 steps 0.94, 25 steps 0.97, 50 steps 1.006 (second order).
"""

from __future__ import annotations

import math

import pytest
import torch

from labelfree_app.models.diffusion.samplers import sample_loop
from labelfree_app.models.diffusion.schedule import NoiseSchedule
from tests.models.diffusion.gaussian_posterior import gaussian_denoiser, mixture_denoiser

S = 0.3
SHAPE = (8, 1, 64, 64)
N = math.prod(SHAPE)
# A per-pixel mean map (a ramp across x), so a sampler that ignored the denoiser's mean fails.
MU = (0.5 + 0.5 * torch.linspace(-1, 1, SHAPE[-1], dtype=torch.float64)).expand(SHAPE)
COSINE = NoiseSchedule.create("cosine")
LINEAR = NoiseSchedule.create("linear")


def _draw(name: str, steps: int, *, prediction: str = "eps", eta: float = 0.0, schedule: NoiseSchedule = COSINE,
          seed: int = 0) -> torch.Tensor:
    model = gaussian_denoiser(schedule, MU, S, prediction)
    gen = torch.Generator().manual_seed(seed)
    return sample_loop(name, model, schedule, SHAPE, steps=steps, prediction=prediction, generator=gen,
                       eta=eta).to(torch.float64)


def _mean_error_in_sd(x: torch.Tensor) -> float:
    """The mean of x - mu in units of the standard error of a mean of N draws."""
    return (x - MU).mean().item() / (S / math.sqrt(N))


def _variance_ratio(x: torch.Tensor) -> float:
    return (x - MU).var().item() / S**2


def _assert_gaussian(x: torch.Tensor, variance_tolerance: float) -> None:
    assert abs(_mean_error_in_sd(x)) < 4.0
    assert _variance_ratio(x) == pytest.approx(1.0, abs=variance_tolerance)


def test_ddpm_with_all_1000_steps_samples_the_data_distribution() -> None:
    _assert_gaussian(_draw("ddpm", 1000), 0.04)


def test_ddpm_on_the_linear_schedule_with_all_steps_samples_the_data_distribution() -> None:
    _assert_gaussian(_draw("ddpm", 1000, schedule=LINEAR), 0.04)


def test_respaced_ddpm_keeps_the_mean_and_its_variance_error_shrinks_with_more_steps() -> None:
    draws = {steps: _draw("ddpm", steps, prediction="v") for steps in (25, 100, 250)}
    errors = [abs(1.0 - _variance_ratio(draws[steps])) for steps in (25, 100, 250)]
    assert all(abs(_mean_error_in_sd(x)) < 4.0 for x in draws.values())
    assert errors[0] > errors[1] > errors[2]
    _assert_gaussian(draws[250], 0.06)


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_ddim_eta_zero_with_250_steps_samples_the_data_distribution(prediction: str) -> None:
    _assert_gaussian(_draw("ddim", 250, prediction=prediction), 0.04)


def test_ddim_eta_one_with_250_steps_samples_the_data_distribution() -> None:
    _assert_gaussian(_draw("ddim", 250, eta=1.0, seed=3), 0.06)


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_dpmpp_2m_with_20_to_50_steps_samples_the_data_distribution(prediction: str) -> None:
    _assert_gaussian(_draw("dpmpp2m", 20, prediction=prediction), 0.08)
    _assert_gaussian(_draw("dpmpp2m", 25, prediction=prediction), 0.05)
    _assert_gaussian(_draw("dpmpp2m", 50, prediction=prediction), 0.03)


def test_dpmpp_2m_is_more_accurate_than_ddim_at_equal_steps() -> None:
    for steps in (10, 20, 25):
        dpm = abs(1.0 - _variance_ratio(_draw("dpmpp2m", steps)))
        ddim = abs(1.0 - _variance_ratio(_draw("ddim", steps)))
        assert dpm < ddim


def test_dpmpp_2m_on_the_linear_schedule_converges_with_50_steps() -> None:
    _assert_gaussian(_draw("dpmpp2m", 50, schedule=LINEAR), 0.04)


def test_samples_follow_a_condition_dependent_mean() -> None:
    gen = torch.Generator().manual_seed(5)
    cond = torch.rand(SHAPE, generator=gen, dtype=torch.float64)
    mu = 0.2 + 0.6 * cond  # the "fluorescence" mean depends on the "bright-field" condition
    model = gaussian_denoiser(COSINE, mu, S, "v")
    x = sample_loop("dpmpp2m", model, COSINE, SHAPE, steps=25, prediction="v", generator=gen).to(torch.float64)
    c, y = cond.flatten() - cond.mean(), x.flatten() - x.mean()
    slope = (c * y).sum() / (c * c).sum()
    assert slope.item() == pytest.approx(0.6, abs=0.03)
    assert (x - mu).var().item() / S**2 == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize(("name", "steps"), [("dpmpp2m", 50), ("ddim", 100)])
def test_samplers_reproduce_a_two_component_mixture(name: str, steps: int) -> None:
    shape = (4, 1, 64, 64)
    model = mixture_denoiser(COSINE, [0.3, 0.7], [-1.0, 1.0], [0.2, 0.2], "v")
    x = sample_loop(name, model, COSINE, shape, steps=steps, prediction="v",
                    generator=torch.Generator().manual_seed(1)).to(torch.float64)
    high, low = x[x > 0], x[x <= 0]
    assert high.numel() / x.numel() == pytest.approx(0.7, abs=0.02)
    assert high.mean().item() == pytest.approx(1.0, abs=0.03)
    assert low.mean().item() == pytest.approx(-1.0, abs=0.03)
    assert high.std().item() == pytest.approx(0.2, rel=0.1)
    assert low.std().item() == pytest.approx(0.2, rel=0.1)
