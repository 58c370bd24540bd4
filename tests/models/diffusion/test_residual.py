"""Residual diffusion: the wrapper speaks the target space, so every sampler works unchanged."""

from __future__ import annotations

import pytest
import torch

from labelfree_app.models.architectures import build_network
from labelfree_app.models.diffusion.residual import ResidualDenoiser
from labelfree_app.models.diffusion.schedule import NoiseSchedule

from .test_denoiser import _randomise_zero_layers


def _residual(prediction: str) -> ResidualDenoiser:
    torch.manual_seed(0)
    net = build_network("residual_cond_denoiser", {
        "dims": 2, "in_channels": 2, "out_channels": 1, "prediction": prediction, "train_steps": 100,
        "mean_net": {"depth": 2, "base_channels": 4},
        "denoiser": {"base_channels": 8, "channel_mults": [1, 2], "attention_levels": []}})
    _randomise_zero_layers(net)
    return net.eval()


@pytest.mark.parametrize("prediction", ["v", "eps", "x0"])
def test_x0_in_target_space_is_the_mean_plus_the_residual_x0(prediction: str) -> None:
    net = _residual(prediction)
    schedule = NoiseSchedule.create("cosine", 100)
    gen = torch.Generator().manual_seed(1)
    cond = torch.randn((2, 2, 16, 16), generator=gen)
    x_t = torch.randn((2, 1, 16, 16), generator=gen)
    t = torch.tensor([10.0, 70.0])
    with torch.no_grad():
        mu = net.mean_net(cond)
        a, _ = schedule.sqrt_terms(t, x_t)
        r_t = x_t - a * mu
        residual_out = net.denoiser(r_t, t, torch.cat([cond, mu], dim=1))
        x0_target, eps_target = schedule.predict_x0_eps(net(x_t, t, cond), x_t, t, prediction)
    x0_residual, eps_residual = schedule.predict_x0_eps(residual_out, r_t, t, prediction)
    torch.testing.assert_close(x0_target, mu + x0_residual, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(eps_target, eps_residual, rtol=1e-4, atol=1e-5)


def test_the_mean_unet_is_frozen_and_stays_in_eval_mode() -> None:
    net = _residual("v").train()
    assert not net.mean_net.training and net.denoiser.training
    assert all(not p.requires_grad for p in net.mean_net.parameters())
    assert any(p.requires_grad for p in net.denoiser.parameters())
    assert net.required_multiple == 4


def test_a_denoiser_that_sees_no_residual_samples_the_unet_prediction() -> None:
    from labelfree_app.models.diffusion.samplers import sample

    net = _residual("x0")
    with torch.no_grad():
        for p in net.denoiser.head.parameters():
            p.zero_()  # the residual network predicts a residual x0 of 0 everywhere
    schedule = NoiseSchedule.create("cosine", 100)
    cond = torch.randn((1, 2, 16, 16), generator=torch.Generator().manual_seed(2))
    final = None
    for record in sample("ddim", lambda x, t: net(x, torch.as_tensor(t).reshape(-1).expand(x.shape[0]), cond),
                         schedule, (1, 1, 16, 16), steps=10, prediction="x0",
                         generator=torch.Generator().manual_seed(3)):
        final = record.x_t
    with torch.no_grad():
        mu = net.mean_net(cond)
    assert final is not None
    torch.testing.assert_close(final, mu, rtol=1e-4, atol=1e-4)


def test_a_residual_manifest_whose_schedule_disagrees_with_its_diffusion_settings_is_refused(tmp_path) -> None:
    from labelfree_app.errors import ManifestError
    from labelfree_app.models.package import load_package, save_package
    from tests.factories import diffusion_manifest

    net = _residual("v")
    kwargs = {"dims": 2, "in_channels": 2, "out_channels": 1, "prediction": "v", "train_steps": 100,
              "mean_net": {"depth": 2, "base_channels": 4},
              "denoiser": {"base_channels": 8, "channel_mults": [1, 2], "attention_levels": []}}
    manifest = diffusion_manifest(kwargs, "residual", train_steps=100)
    manifest["architecture"]["id"] = "residual_cond_denoiser"
    package = load_package(save_package(tmp_path / "ok", manifest, net.state_dict()))
    assert package.build_network("cpu").required_multiple == 4
    manifest["diffusion"]["prediction"] = "eps"
    with pytest.raises(ManifestError, match="prediction"):
        save_package(tmp_path / "bad", manifest, net.state_dict())
