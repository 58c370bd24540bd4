"""The noise schedule: betas, respacing, and the x0 / eps / v algebra."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from labelfree_app.errors import LabelFreeError, ManifestError
from labelfree_app.models.diffusion.schedule import NoiseSchedule, respace


def test_linear_betas_match_guided_diffusion_endpoints_and_scale_with_length() -> None:
    betas = NoiseSchedule.create("linear", 1000).betas
    assert betas.shape == (1000,) and betas.dtype == np.float64
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    short = NoiseSchedule.create("linear", 500).betas
    assert short[0] == pytest.approx(2e-4) and short[-1] == pytest.approx(0.04)


def test_cosine_alpha_bar_follows_the_squared_cosine_formula() -> None:
    schedule = NoiseSchedule.create("cosine", 1000)

    def f(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    for t in (0, 10, 250, 500, 900):
        assert schedule.alphas_cumprod[t] == pytest.approx(f((t + 1) / 1000) / f(0.0), rel=1e-9)
    assert schedule.betas.max() <= 0.999


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_alphas_cumprod_decrease_strictly_inside_the_unit_interval(kind: str) -> None:
    schedule = NoiseSchedule.create(kind, 1000)
    abar = schedule.alphas_cumprod
    assert abar.shape == (1000,) and schedule.train_steps == 1000
    assert np.all(np.diff(abar) < 0)
    assert 0 < abar[-1] < 1e-3 and 0.999 < abar[0] < 1
    assert np.all((schedule.betas > 0) & (schedule.betas < 1))


def test_schedule_arrays_are_read_only() -> None:
    schedule = NoiseSchedule.create("cosine")
    with pytest.raises(ValueError):
        schedule.betas[0] = 0.5


def test_unknown_schedule_kind_is_a_manifest_error_naming_the_field() -> None:
    with pytest.raises(ManifestError) as info:
        NoiseSchedule.create("sigmoid")
    assert info.value.field == "diffusion.schedule" and "sigmoid" in str(info.value)


@pytest.mark.parametrize(("train_steps", "steps"), [(1000, 10), (1000, 25), (1000, 50), (1000, 1000), (100, 7)])
def test_respace_gives_exactly_steps_distinct_descending_timesteps_from_last_to_zero(
    train_steps: int, steps: int
) -> None:
    timesteps = respace(train_steps, steps)
    assert timesteps.shape == (steps,) and timesteps.dtype == np.int64
    assert timesteps[0] == train_steps - 1 and timesteps[-1] == 0
    assert np.all(np.diff(timesteps) < 0)


def test_respace_with_every_step_visits_every_timestep() -> None:
    np.testing.assert_array_equal(respace(1000, 1000), np.arange(999, -1, -1))


def test_respace_spaces_steps_evenly() -> None:
    gaps = -np.diff(respace(1000, 25))
    assert gaps.min() >= 41 and gaps.max() <= 42


@pytest.mark.parametrize("steps", [0, -3, 1001])
def test_respace_rejects_step_counts_outside_one_to_train_steps(steps: int) -> None:
    with pytest.raises(LabelFreeError, match="between 1 and 1000"):
        respace(1000, steps)


def test_q_sample_has_the_forward_process_mean_and_variance() -> None:
    schedule = NoiseSchedule.create("cosine")
    gen = torch.Generator().manual_seed(0)
    x0 = torch.full((4, 1, 64, 64), 2.0)
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.tensor([0, 300, 600, 999])
    x_t = schedule.q_sample(x0, t, noise)
    abar = schedule.alphas_cumprod[t.numpy()]
    n = x0[0].numel()
    for i in range(4):
        assert x_t[i].mean().item() == pytest.approx(2.0 * math.sqrt(abar[i]), abs=5 * math.sqrt((1 - abar[i]) / n) + 1e-6)
        assert x_t[i].var().item() == pytest.approx(1 - abar[i], rel=0.06, abs=1e-6)


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_predict_x0_eps_inverts_the_training_target(prediction: str) -> None:
    schedule = NoiseSchedule.create("cosine")
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn((5, 2, 8, 8), generator=gen, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    t = torch.tensor([0, 10, 400, 800, 990])
    x_t = schedule.q_sample(x0, t, noise)
    target = schedule.target(prediction, x0, noise, t)
    x0_back, eps_back = schedule.predict_x0_eps(target, x_t, t, prediction)
    torch.testing.assert_close(x0_back, x0, atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(eps_back, noise, atol=1e-8, rtol=1e-8)


def test_v_target_is_sqrt_abar_noise_minus_sqrt_one_minus_abar_x0() -> None:
    schedule = NoiseSchedule.create("linear")
    x0, noise = torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 3.0)
    abar = schedule.alphas_cumprod[500]
    expected = math.sqrt(abar) * 3.0 - math.sqrt(1 - abar) * 1.0
    v = schedule.v_target(x0, noise, torch.tensor([500]))
    torch.testing.assert_close(v, torch.full_like(v, expected))


def test_coefficients_follow_the_tensor_dtype_and_accept_scalar_t() -> None:
    schedule = NoiseSchedule.create("cosine")
    x = torch.ones(2, 1, 4, 4, dtype=torch.float32)
    assert schedule.q_sample(x, 100, x).dtype == torch.float32
    assert schedule.q_sample(x.double(), torch.tensor([1, 2]), x.double()).dtype == torch.float64


def test_snr_decreases_with_noise_level() -> None:
    snr = NoiseSchedule.create("cosine").snr(torch.arange(1000))
    assert torch.all(snr[1:] < snr[:-1])
    assert snr[0] > 1e3 and snr[-1] < 1e-6


def test_alpha_bar_is_exact_at_integers_and_interpolates_fractional_timesteps() -> None:
    schedule = NoiseSchedule.create("cosine")
    abar = schedule.alphas_cumprod
    assert schedule.alpha_bar(10).item() == pytest.approx(abar[10], rel=1e-12)
    middle = schedule.alpha_bar(torch.tensor([10.5])).item()
    assert abar[11] < middle < abar[10]
    assert middle == pytest.approx(math.sqrt(abar[10] * abar[11]), rel=1e-12)


def test_unknown_prediction_type_is_a_manifest_error() -> None:
    schedule = NoiseSchedule.create("cosine")
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ManifestError) as info:
        schedule.predict_x0_eps(x, x, 5, "score")
    assert info.value.field == "diffusion.prediction"
