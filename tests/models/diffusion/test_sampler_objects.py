"""Samplers as objects: ``step()`` returns a result, one loop drives every sampler, and the
higher-order solver converges to the exact probability-flow solution with few steps."""

from __future__ import annotations

import math

import pytest
import torch

from labelfree_app.models.diffusion.samplers import (
    SAMPLERS,
    DDIMSampler,
    DPMSolverMultistep,
    StepResult,
    make_sampler,
    sample,
    sample_loop,
)
from labelfree_app.models.diffusion.schedule import NoiseSchedule
from tests.models.diffusion.gaussian_posterior import gaussian_denoiser

SCHEDULE = NoiseSchedule.create("cosine", 1000)
SHAPE = (4, 1, 32, 32)
MU, S = 0.5, 0.3


def _noise(seed: int = 0) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _exact_ode_solution(noise: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE keeps x_t's standard score for Gaussian data N(MU, S^2), so the
    exact clean end point of the noise at the first timestep is MU + S * z."""
    a = float(SCHEDULE.alphas_cumprod[SCHEDULE.respace(10)[0]])
    z = (noise - math.sqrt(a) * MU) / math.sqrt(a * S**2 + 1 - a)
    return MU + S * z


def _ode_error(name: str, steps: int) -> float:
    noise = _noise()
    x = sample_loop(name, gaussian_denoiser(SCHEDULE, MU, S, "v"), SCHEDULE, SHAPE, steps=steps, prediction="v",
                    noise=noise, dtype=torch.float64)
    return (x - _exact_ode_solution(noise)).abs().max().item()


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_hand_written_loop_of_step_calls_equals_the_shared_driving_loop(name: str) -> None:
    model = gaussian_denoiser(SCHEDULE, MU, S, "v")
    driven = sample_loop(name, model, SCHEDULE, SHAPE, steps=9, prediction="v", eta=0.5,
                         generator=torch.Generator().manual_seed(4))
    sampler = make_sampler(name, SCHEDULE, steps=9, prediction="v", eta=0.5)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(SHAPE, generator=gen)
    for t in sampler.timesteps:
        result = sampler.step(model(x, torch.full((SHAPE[0],), int(t))), int(t), x, gen)
        assert isinstance(result, StepResult) and result.prev_sample.shape == SHAPE
        x = result.prev_sample
    torch.testing.assert_close(x, driven, rtol=0, atol=0)


def test_a_built_sampler_can_be_driven_again_and_gives_the_same_samples() -> None:
    sampler = DPMSolverMultistep(SCHEDULE, 8, "v", order=3)
    model = gaussian_denoiser(SCHEDULE, MU, S, "v")
    first, again = (sample_loop(sampler, model, SCHEDULE, SHAPE, steps=8, prediction="v", noise=_noise(1))
                    for _ in range(2))
    torch.testing.assert_close(first, again, rtol=0, atol=0)


def test_the_last_step_returns_the_clean_estimate_and_earlier_steps_do_not() -> None:
    records = list(sample("dpmpp3m", gaussian_denoiser(SCHEDULE, MU, S, "v"), SCHEDULE, SHAPE, steps=6,
                          prediction="v", noise=_noise()))
    assert records[-1].x_t is records[-1].pred_x0
    assert not torch.equal(records[-2].x_t, records[-2].pred_x0)


def test_deterministic_samplers_converge_to_the_exact_ode_solution_and_higher_order_gets_there_sooner() -> None:
    ddim, dpm2, dpm3 = (_ode_error(name, 10) for name in ("ddim", "dpmpp2m", "dpmpp3m"))
    assert dpm3 < dpm2 < ddim
    errors_3m = [_ode_error("dpmpp3m", steps) for steps in (6, 10, 25)]
    assert errors_3m[0] > errors_3m[1] > errors_3m[2]
    assert errors_3m[2] < 0.02


def test_third_order_with_three_steps_equals_second_order() -> None:
    # Three steps leave room for no third-order update: the first step is first order and the
    # last two are lowered (second, then first order into t = 0).
    model = gaussian_denoiser(SCHEDULE, MU, S, "v")
    two, three = (sample_loop(name, model, SCHEDULE, SHAPE, steps=3, prediction="v", noise=_noise())
                  for name in ("dpmpp2m", "dpmpp3m"))
    torch.testing.assert_close(two, three, rtol=0, atol=0)


def test_a_ddim_sampler_refuses_a_negative_eta_when_built() -> None:
    from labelfree_app.errors import LabelFreeError

    with pytest.raises(LabelFreeError, match="eta"):
        DDIMSampler(SCHEDULE, 10, "v", eta=-0.1)


# Final samples of the generator samplers before they became objects (same seed and model),
# so the rewrite is held to the old results: the sum over a (2, 1, 8, 8) batch and three pixels.
BEFORE = {
    ("ddpm", 0.0): (68.1049502659589, [0.548317, 0.938561, 0.443081]),
    ("ddim", 0.0): (62.60995866730809, [0.407165, 0.459651, 0.676326]),
    ("ddim", 0.6): (66.18412810564041, [0.490561, 0.729035, 0.504056]),
    ("dpmpp2m", 0.0): (62.48514331318438, [0.398829, 0.456028, 0.692159]),
}


@pytest.mark.parametrize(("name", "eta"), list(BEFORE))
def test_sampler_objects_reproduce_the_samples_of_the_generator_samplers_they_replaced(name: str, eta: float) -> None:
    x = sample_loop(name, gaussian_denoiser(SCHEDULE, MU, S, "v"), SCHEDULE, (2, 1, 8, 8), steps=10, prediction="v",
                    generator=torch.Generator().manual_seed(7), eta=eta)
    total, pixels = BEFORE[(name, eta)]
    assert x.double().sum().item() == pytest.approx(total, abs=1e-4)
    assert x[1, 0, 3, :3].tolist() == pytest.approx(pixels, abs=1e-5)
