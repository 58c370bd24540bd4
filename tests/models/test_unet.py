"""The fnet-style U-Net: shapes in 2D/3D, widths, batch-norm folding, the architecture table."""

from __future__ import annotations

import pytest
import torch

from labelfree_app.errors import ManifestError
from labelfree_app.models.architectures import build_network
from labelfree_app.models.unet import UNet, fuse_for_inference


def _randomize_batchnorm(net: torch.nn.Module, seed: int = 0) -> None:
    """Give every batch-norm non-trivial statistics and affine parameters (as after training)."""
    gen = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)


@pytest.mark.parametrize(
    ("dims", "depth", "base", "in_ch", "out_ch", "spatial"),
    [
        (2, 1, 4, 1, 1, (8, 12)),
        (2, 2, 4, 3, 2, (16, 24)),
        (2, 3, 6, 5, 1, (16, 32)),
        (2, 0, 4, 1, 1, (5, 7)),
        (3, 1, 4, 1, 1, (4, 6, 8)),
        (3, 2, 4, 2, 3, (8, 8, 12)),
    ],
)
def test_forward_keeps_spatial_shape_and_gives_out_channels(dims, depth, base, in_ch, out_ch, spatial):
    net = UNet(dims=dims, in_channels=in_ch, out_channels=out_ch, depth=depth, base_channels=base).eval()
    x = torch.randn(2, in_ch, *spatial)
    with torch.inference_mode():
        y = net(x)
    assert y.shape == (2, out_ch, *spatial)
    assert torch.isfinite(y).all()
    assert net.required_multiple == 2**depth


def test_channels_double_at_each_level_like_fnet():
    net = UNet(dims=2, in_channels=2, depth=3, base_channels=8)
    assert [enc.conv2.out_channels for enc in net.encoders] == [8, 16, 32, 64]
    assert net.encoders[0].conv1.in_channels == 2
    assert [down.conv.stride for down in net.downs] == [(2, 2)] * 3
    assert [up.conv.out_channels for up in net.ups] == [8, 16, 32]
    assert [dec.conv1.in_channels for dec in net.decoders] == [16, 32, 64]
    assert net.head.kernel_size == (3, 3)


def _fnet_parameter_count(dims: int, in_ch: int, out_ch: int, depth: int, base: int) -> int:
    """Parameters of fnet's Net counted from its description (3^d convs, 2^d resampling, BN)."""
    k3, k2 = 3**dims, 2**dims
    widths = [base * 2**level for level in range(depth + 1)]

    def conv(cin: int, cout: int, kernel: int) -> int:
        return kernel * cin * cout + cout

    total = 0
    for level, w in enumerate(widths):
        cin = in_ch if level == 0 else widths[level - 1]
        total += conv(cin, w, k3) + conv(w, w, k3) + 4 * w  # sub_2conv_more with 2 BN
    for level in range(depth):
        w = widths[level]
        total += conv(w, w, k2) + 2 * w  # conv_down + bn0
        total += conv(widths[level + 1], w, k2) + 2 * w  # convt + bn1
        total += conv(2 * w, w, k3) + conv(w, w, k3) + 4 * w  # sub_2conv_less
    return total + conv(base, out_ch, k3)  # conv_out


@pytest.mark.parametrize("dims", [2, 3])
def test_default_network_is_fnet_sized(dims):
    net = UNet(dims=dims)
    assert net.depth == 4 and net.base_channels == 32 and net.required_multiple == 16
    assert net.encoders[4].conv2.out_channels == 512
    assert sum(p.numel() for p in net.parameters()) == _fnet_parameter_count(dims, 1, 1, 4, 32)


def test_spatial_size_not_a_multiple_fails():
    net = UNet(dims=2, depth=2, base_channels=4).eval()
    with pytest.raises(RuntimeError):
        net(torch.randn(1, 1, 10, 16))


@pytest.mark.parametrize("dims", [2, 3])
def test_batchnorm_folding_keeps_outputs_and_leaves_original_untouched(dims):
    torch.manual_seed(0)
    net = UNet(dims=dims, in_channels=2, out_channels=2, depth=2, base_channels=4)
    _randomize_batchnorm(net)
    net.eval()
    spatial = (16, 20) if dims == 2 else (8, 8, 12)
    x = torch.randn(3, 2, *spatial)
    fused = fuse_for_inference(net)
    with torch.inference_mode():
        expected = net(x)
        got = fused(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    assert sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules()) > 0


def test_channels_last_input_gives_same_output():
    torch.manual_seed(1)
    net = UNet(dims=2, depth=2, base_channels=4)
    _randomize_batchnorm(net)
    net.eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.inference_mode():
        expected = net(x)
        got = net.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_architecture_kwargs_rebuild_the_same_network():
    net = UNet(dims=3, in_channels=2, out_channels=3, depth=2, base_channels=4, out_kernel_size=1)
    rebuilt = build_network("fnet_unet", net.architecture_kwargs())
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    assert net.architecture_kwargs() == {
        "dims": 3, "in_channels": 2, "out_channels": 3, "depth": 2, "base_channels": 4, "out_kernel_size": 1,
    }


@pytest.mark.parametrize(
    "kwargs",
    [{"dims": 4}, {"depth": -1}, {"base_channels": 0}, {"in_channels": 1.5}, {"out_kernel_size": 2}],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        UNet(**kwargs)


def test_architecture_table_refuses_unknown_id_naming_the_field():
    with pytest.raises(ManifestError) as info:
        build_network("my_module.Net", {}, source="/some/manifest.json")
    assert info.value.field == "architecture.id"
    assert "architecture.id" in str(info.value) and "/some/manifest.json" in str(info.value)


def test_architecture_table_refuses_bad_kwargs_naming_the_field():
    for kwargs in ({"nonsense": 1}, {"dims": 5}):
        with pytest.raises(ManifestError) as info:
            build_network("fnet_unet", kwargs)
        assert info.value.field == "architecture.kwargs"
