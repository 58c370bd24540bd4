"""Sampler mechanics: records, seeding, equivalences between samplers, dispatch, cancelling."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch

from labelfree_app.errors import InputShapeError, LabelFreeError, ManifestError
from labelfree_app.models.diffusion.samplers import (
    SAMPLERS,
    StepRecord,
    ddim_sample,
    ddpm_sample,
    dpmpp_2m_sample,
    run_to_end,
    sample,
    sample_loop,
)
from labelfree_app.models.diffusion.schedule import NoiseSchedule, respace
from tests.models.diffusion.gaussian_posterior import gaussian_denoiser

SHAPE = (2, 1, 16, 16)
SCHEDULE = NoiseSchedule.create("cosine", 1000)


def _model(prediction: str = "v", calls: list | None = None):
    return gaussian_denoiser(SCHEDULE, 0.5, 0.3, prediction, calls)


def _final(name: str, seed: int, steps: int = 10, eta: float = 0.0, **kwargs) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return sample_loop(name, _model(), SCHEDULE, SHAPE, steps=steps, prediction="v", generator=gen, eta=eta, **kwargs)


@pytest.mark.parametrize(("name", "eta"), [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 1.0), ("dpmpp2m", 0.0)])
def test_sampler_is_deterministic_for_a_fixed_seed_and_differs_across_seeds(name: str, eta: float) -> None:
    first, again, other = _final(name, 7, eta=eta), _final(name, 7, eta=eta), _final(name, 8, eta=eta)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert (first - other).abs().mean() > 0.05


@pytest.mark.parametrize("name", ["ddim", "dpmpp2m"])
def test_deterministic_samplers_with_the_same_noise_ignore_the_generator(name: str) -> None:
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    outs = [
        sample_loop(name, _model(), SCHEDULE, SHAPE, steps=10, prediction="v", noise=noise,
                    generator=torch.Generator().manual_seed(seed))
        for seed in (0, 1)
    ]
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_ddpm_with_the_same_noise_but_another_seed_differs() -> None:
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    a, b = (
        sample_loop("ddpm", _model(), SCHEDULE, SHAPE, steps=10, prediction="v", noise=noise,
                    generator=torch.Generator().manual_seed(seed))
        for seed in (0, 1)
    )
    assert (a - b).abs().mean() > 0.01


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_yields_one_record_per_step_on_the_respaced_timesteps(name: str) -> None:
    calls: list[torch.Tensor] = []
    records = sample(name, _model("eps", calls), SCHEDULE, SHAPE, steps=12, prediction="eps",
                     generator=torch.Generator().manual_seed(0))
    seen: list[StepRecord] = []
    with pytest.raises(StopIteration) as stop:
        while True:
            seen.append(next(records))
    expected_t = respace(1000, 12)
    assert [r.index for r in seen] == list(range(12)) and {r.total for r in seen} == {12}
    assert [r.t for r in seen] == expected_t.tolist()
    assert [r.is_last for r in seen] == [False] * 11 + [True]
    assert all(r.x_t.shape == SHAPE and r.pred_x0.shape == SHAPE for r in seen)
    assert stop.value.value is seen[-1].x_t
    assert len(calls) == 12
    for t, call in zip(expected_t, calls):
        assert call.dtype == torch.long and call.shape == (SHAPE[0],) and torch.all(call == int(t))


def test_records_are_not_modified_by_later_steps() -> None:
    records = ddim_sample(_model(), SCHEDULE, SHAPE, steps=5, prediction="v",
                          generator=torch.Generator().manual_seed(0))
    first = next(records)
    kept = first.x_t.clone()
    run_to_end(records)
    torch.testing.assert_close(first.x_t, kept, rtol=0, atol=0)


def test_ddim_with_eta_one_equals_respaced_ddpm_for_the_same_seed() -> None:
    # Two derivations of the same ancestral step: DDPM with respaced betas
    # 1 - abar_t / abar_prev, and DDIM's sigma formula at eta = 1.
    for steps in (7, 25):
        ddpm = _final("ddpm", 11, steps=steps)
        ddim = _final("ddim", 11, steps=steps, eta=1.0)
        torch.testing.assert_close(ddpm, ddim, rtol=1e-4, atol=1e-5)


def test_dpmpp_2m_with_two_steps_is_first_order_and_equals_ddim() -> None:
    torch.testing.assert_close(_final("dpmpp2m", 4, steps=2), _final("ddim", 4, steps=2), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(_final("dpmpp2m", 4, steps=10), _final("ddim", 4, steps=10), atol=1e-3)


@pytest.mark.parametrize(("name", "eta"), [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 0.5), ("dpmpp2m", 0.0)])
def test_eps_v_and_x0_networks_of_the_same_posterior_give_the_same_samples(name: str, eta: float) -> None:
    outs = []
    for prediction in ("eps", "v", "x0"):
        gen = torch.Generator().manual_seed(5)
        model = gaussian_denoiser(SCHEDULE, 0.5, 0.3, prediction)
        outs.append(sample_loop(name, model, SCHEDULE, SHAPE, steps=20, prediction=prediction,
                                generator=gen, eta=eta, dtype=torch.float64))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(outs[0], outs[2], rtol=0, atol=1e-6)


def test_closing_a_sampler_stops_model_calls_and_frees_its_tensors() -> None:
    calls: list[torch.Tensor] = []
    records = ddpm_sample(_model("v", calls), SCHEDULE, SHAPE, steps=50, prediction="v",
                          generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        record = next(records)
    current = weakref.ref(record.x_t)
    del record
    gc.collect()
    assert current() is not None  # the running sampler still holds its state
    records.close()
    gc.collect()
    assert len(calls) == 3
    assert current() is None
    with pytest.raises(StopIteration):
        next(records)


def test_sample_dispatches_by_name_and_rejects_unknown_names_before_running() -> None:
    assert torch.equal(_final("ddim", 2), sample_loop("ddim", _model(), SCHEDULE, SHAPE, steps=10, prediction="v",
                                                       generator=torch.Generator().manual_seed(2)))
    with pytest.raises(LabelFreeError, match="Unknown sampler 'euler'.*ddim"):
        sample("euler", _model(), SCHEDULE, SHAPE, steps=10, prediction="v")


def test_bad_settings_raise_when_the_sampler_is_created() -> None:
    with pytest.raises(ManifestError):
        dpmpp_2m_sample(_model(), SCHEDULE, SHAPE, steps=10, prediction="score")
    with pytest.raises(LabelFreeError, match="between 1 and 1000"):
        ddim_sample(_model(), SCHEDULE, SHAPE, steps=0, prediction="v")
    with pytest.raises(LabelFreeError, match="eta"):
        ddim_sample(_model(), SCHEDULE, SHAPE, steps=10, prediction="v", eta=-1.0)


def test_mismatched_noise_or_model_output_shapes_raise_input_shape_errors() -> None:
    with pytest.raises(InputShapeError, match="starting noise"):
        ddim_sample(_model(), SCHEDULE, SHAPE, steps=3, prediction="v", noise=torch.zeros(1, 1, 4, 4))

    def two_channels(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], 2, *x.shape[2:])

    with pytest.raises(InputShapeError, match="output channels"):
        run_to_end(ddim_sample(two_channels, SCHEDULE, SHAPE, steps=3, prediction="v"))


@pytest.mark.parametrize("name", SAMPLERS)
def test_clip_x0_bounds_every_clean_estimate(name: str) -> None:
    gen = torch.Generator().manual_seed(0)
    records = list(sample(name, _model("eps"), SCHEDULE, SHAPE, steps=8, prediction="eps", generator=gen, clip_x0=0.4))
    assert all(r.pred_x0.abs().max() <= 0.4 + 1e-6 for r in records)
    assert records[-1].x_t.abs().max() <= 0.4 + 1e-6


def test_one_step_sampling_returns_the_first_clean_estimate() -> None:
    records = list(ddim_sample(_model(), SCHEDULE, SHAPE, steps=1, prediction="v",
                               generator=torch.Generator().manual_seed(0)))
    assert len(records) == 1 and records[0].t == 999
    torch.testing.assert_close(records[0].x_t, records[0].pred_x0)


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_runs_in_float64_when_asked_and_builds_no_autograd_graph(name: str) -> None:
    noise = torch.randn(SHAPE, dtype=torch.float64, requires_grad=True)
    records = list(sample(name, _model(), SCHEDULE, SHAPE, steps=4, prediction="v", noise=noise, dtype=torch.float64))
    assert all(r.x_t.dtype == torch.float64 for r in records)
    assert not any(r.x_t.requires_grad or r.pred_x0.requires_grad for r in records)
    assert torch.is_grad_enabled()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_same_seed_gives_the_same_samples_on_cpu_and_cuda() -> None:
    cpu = _final("ddpm", 9)
    cuda = _final("ddpm", 9, device="cuda")
    np.testing.assert_allclose(cuda.cpu().numpy(), cpu.numpy(), atol=1e-4)
