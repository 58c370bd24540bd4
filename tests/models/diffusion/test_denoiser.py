"""The conditional denoiser network: shapes, conditioning, errors, and that it can learn."""

from __future__ import annotations

import pytest
import torch

from labelfree_app.errors import InputShapeError, ManifestError
from labelfree_app.models.architectures import build_network
from labelfree_app.models.diffusion.denoiser import (
    ConditionalDenoiser,
    depth_to_space,
    space_to_depth,
    timestep_embedding,
)
from labelfree_app.models.diffusion.schedule import NoiseSchedule


def _randomise_zero_layers(net: torch.nn.Module) -> None:
    """ADM zero-initialises output convs; give them weights so outputs depend on inputs."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            if torch.count_nonzero(p) == 0 and p.dim() > 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize(
    ("kwargs", "spatial"),
    [
        (dict(), (32, 48)),
        (dict(in_channels=3, out_channels=2, base_channels=8, channel_mults=(1, 2, 2, 4)), (16, 40)),
        (dict(base_channels=8, channel_mults=[1, 2], num_res_blocks=2, attention_levels=[1]), (8, 8)),
        (dict(base_channels=16, channel_mults=(1, 2, 4), attention_levels=(1, 2), time_embed_dim=32,
              dropout=0.1), (24, 16)),
        (dict(base_channels=8, channel_mults=(1,)), (7, 5)),
        (dict(base_channels=8, channel_mults=(1, 2), patch_size=2, in_channels=2, out_channels=3), (12, 8)),
    ],
)
def test_2d_denoiser_returns_out_channels_at_the_input_size(kwargs: dict, spatial: tuple[int, int]) -> None:
    net = ConditionalDenoiser(dims=2, **kwargs)
    b = 3
    x_t = torch.randn(b, net.out_channels, *spatial)
    cond = torch.randn(b, net.in_channels, *spatial)
    out = net(x_t, torch.tensor([0, 500, 999]), cond)
    assert out.shape == x_t.shape and out.dtype == torch.float32
    levels = len(kwargs.get("channel_mults", (1, 2, 2)))
    assert net.required_multiple == kwargs.get("patch_size", 1) * 2 ** (levels - 1)


@pytest.mark.parametrize(("attention_levels", "patch_size"), [((), 1), ((1,), 1), ((), 2)])
def test_3d_denoiser_returns_out_channels_at_the_input_size(attention_levels: tuple[int, ...], patch_size: int) -> None:
    net = ConditionalDenoiser(dims=3, in_channels=2, base_channels=8, channel_mults=(1, 2),
                              attention_levels=attention_levels, patch_size=patch_size)
    _randomise_zero_layers(net)
    side = 2 * patch_size
    x_t, cond = torch.randn(2, 1, 2 * side, 4 * side, 3 * side), torch.randn(2, 2, 2 * side, 4 * side, 3 * side)
    out = net(x_t, torch.tensor([3.0, 700.0]), cond)
    assert out.shape == x_t.shape and torch.isfinite(out).all()


def test_a_fresh_denoiser_outputs_zeros_like_adm() -> None:
    net = ConditionalDenoiser(base_channels=8)
    out = net(torch.randn(1, 1, 8, 8), torch.tensor([10]), torch.randn(1, 1, 8, 8))
    assert torch.count_nonzero(out) == 0


def test_output_depends_on_the_condition_the_noisy_target_and_fractional_timesteps() -> None:
    torch.manual_seed(0)
    net = ConditionalDenoiser(base_channels=8, channel_mults=(1, 2)).eval()
    _randomise_zero_layers(net)
    x_t, cond = torch.randn(1, 1, 16, 16), torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        base = net(x_t, torch.tensor([100.0]), cond)
        assert not torch.allclose(base, net(x_t, torch.tensor([100.0]), cond + 1))
        assert not torch.allclose(base, net(x_t + 1, torch.tensor([100.0]), cond))
        assert not torch.allclose(base, net(x_t, torch.tensor([100.5]), cond))
        torch.testing.assert_close(base, net(x_t, 100.0, cond))  # a scalar t is broadcast


def test_each_batch_item_is_conditioned_on_its_own_timestep() -> None:
    net = ConditionalDenoiser(base_channels=8, channel_mults=(1, 2)).eval()
    _randomise_zero_layers(net)
    x_t, cond = torch.randn(1, 1, 8, 8).repeat(2, 1, 1, 1), torch.randn(1, 1, 8, 8).repeat(2, 1, 1, 1)
    with torch.no_grad():
        both = net(x_t, torch.tensor([10, 900]), cond)
        torch.testing.assert_close(both[1:], net(x_t[:1], torch.tensor([900]), cond[:1]), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(both[0], both[1])


@pytest.mark.parametrize("shape", [(2, 3, 8, 12), (1, 2, 4, 6, 8)])
def test_space_to_depth_round_trips_and_matches_pixel_unshuffle_in_2d(shape: tuple[int, ...]) -> None:
    x = torch.randn(shape)
    folded = space_to_depth(x, 2)
    assert folded.shape == (shape[0], shape[1] * 2 ** (len(shape) - 2), *(n // 2 for n in shape[2:]))
    torch.testing.assert_close(depth_to_space(folded, 2), x, rtol=0, atol=0)
    if len(shape) == 4:
        torch.testing.assert_close(folded, torch.nn.functional.pixel_unshuffle(x, 2), rtol=0, atol=0)


def test_timestep_embedding_is_sinusoidal() -> None:
    emb = timestep_embedding(torch.tensor([0.0, 1.0, 2.5]), 8)
    assert emb.shape == (3, 8)
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    assert emb[1, 0] == pytest.approx(torch.cos(torch.tensor(1.0)).item())


def test_wrong_channels_or_sizes_raise_input_shape_errors() -> None:
    net = ConditionalDenoiser(in_channels=2, base_channels=8, channel_mults=(1, 2, 2))
    good_x, good_c = torch.randn(1, 1, 16, 16), torch.randn(1, 2, 16, 16)
    with pytest.raises(InputShapeError, match="2 channel"):
        net(good_x, torch.tensor([1]), torch.randn(1, 1, 16, 16))
    with pytest.raises(InputShapeError, match="noisy target"):
        net(torch.randn(1, 2, 16, 16), torch.tensor([1]), good_c)
    with pytest.raises(InputShapeError, match="multiples of 4"):
        net(torch.randn(1, 1, 18, 16), torch.tensor([1]), torch.randn(1, 2, 18, 16))
    net(good_x, torch.tensor([1]), good_c)


def test_bad_constructor_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        ConditionalDenoiser(dims=1)
    with pytest.raises(ValueError):
        ConditionalDenoiser(channel_mults=(1, 2), attention_levels=(2,))
    with pytest.raises(ValueError):
        ConditionalDenoiser(patch_size=0)


def test_architecture_table_builds_the_denoiser_from_manifest_kwargs() -> None:
    net = build_network("cond_denoiser_unet", {"dims": 2, "in_channels": 1, "out_channels": 1,
                                               "base_channels": 8, "channel_mults": [1, 2, 2]})
    assert isinstance(net, ConditionalDenoiser) and net.required_multiple == 4
    with pytest.raises(ManifestError):
        build_network("cond_denoiser_unet", {"width": 8})


@pytest.fixture
def one_thread():
    """Tiny backward passes are all thread-sync overhead; on a busy 2-core box one thread is steadier."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_tiny_denoiser_learns_to_predict_v_from_the_condition(one_thread: None) -> None:
    # The loss helpers drive a few optimiser steps; the v-loss on a fixed batch must drop.
    torch.manual_seed(0)
    schedule = NoiseSchedule.create("cosine")
    net = ConditionalDenoiser(base_channels=8, channel_mults=(1, 2))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    cond = torch.randn(4, 1, 16, 16)
    x0 = 0.5 * cond  # the target is a function of the condition
    noise = torch.randn_like(x0)
    t = torch.tensor([50, 300, 600, 900])
    x_t, target = schedule.q_sample(x0, t, noise), schedule.v_target(x0, noise, t)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.mse_loss(net(x_t, t, cond), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
