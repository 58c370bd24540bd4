"""The fnet-style U-Net regressor in 2D or 3D.

Same layers as pytorch_fnet's ``fnet_nn_3d_params.Net`` (Ounkomol et al. 2018): at every level two
3x3(x3) conv + batch-norm + ReLU, a 2x2(x2) stride-2 conv + BN + ReLU to go down (the next level's
first conv doubles the channels), a 2x2(x2) stride-2 transposed conv + BN + ReLU to come up,
concatenation skips, and a final conv to the output channels (3x3 like fnet by default). The layers
are stored flat (``encoders.i``, ``downs.i`` ...) rather than recursively; ``fnet_import`` maps fnet's
nested names onto them.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def _conv_types(dims: int) -> tuple[type[nn.Module], type[nn.Module], type[nn.Module]]:
    if dims == 2:
        return nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d
    if dims == 3:
        return nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d
    raise ValueError(f"dims must be 2 or 3, not {dims!r}")


class DoubleConv(nn.Module):
    """Two (conv 3, batch-norm, ReLU) layers; fnet's ``SubNet2Conv``."""

    def __init__(self, dims: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        conv, _, norm = _conv_types(dims)
        self.conv1 = conv(in_channels, out_channels, kernel_size=3, padding=1)
        self.bn1 = norm(out_channels)
        self.conv2 = conv(out_channels, out_channels, kernel_size=3, padding=1)
        self.bn2 = norm(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(x)))


class Resample(nn.Module):
    """A stride-2 (transposed) conv of kernel 2, batch-norm and ReLU: one step down or up."""

    def __init__(self, dims: int, in_channels: int, out_channels: int, *, up: bool) -> None:
        super().__init__()
        conv_cls, convt_cls, norm = _conv_types(dims)
        layer = convt_cls if up else conv_cls
        self.conv = layer(in_channels, out_channels, kernel_size=2, stride=2)
        self.bn = norm(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class UNet(nn.Module):
    """fnet's U-Net. Input (B, in_channels, *spatial), every spatial size a multiple of
    ``required_multiple``; output (B, out_channels, *spatial)."""

    def __init__(
        self,
        dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        depth: int = 4,
        base_channels: int = 32,
        out_kernel_size: int = 3,
    ) -> None:
        super().__init__()
        _conv_types(dims)
        for name, value, low in (
            ("in_channels", in_channels, 1),
            ("out_channels", out_channels, 1),
            ("depth", depth, 0),
            ("base_channels", base_channels, 1),
            ("out_kernel_size", out_kernel_size, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, not {value!r}")
        if out_kernel_size % 2 == 0:
            raise ValueError(f"out_kernel_size must be odd, not {out_kernel_size}")
        self.dims = dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.depth = depth
        self.base_channels = base_channels
        self.required_multiple = 2**depth

        widths = [base_channels * 2**level for level in range(depth + 1)]
        conv, _, _ = _conv_types(dims)
        self.encoders = nn.ModuleList(
            DoubleConv(dims, in_channels if level == 0 else widths[level - 1], widths[level])
            for level in range(depth + 1)
        )
        self.downs = nn.ModuleList(Resample(dims, w, w, up=False) for w in widths[:-1])
        self.ups = nn.ModuleList(
            Resample(dims, widths[level + 1], widths[level], up=True) for level in range(depth)
        )
        self.decoders = nn.ModuleList(DoubleConv(dims, 2 * w, w) for w in widths[:-1])
        self.head = conv(widths[0], out_channels, kernel_size=out_kernel_size, padding=out_kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        for level in range(self.depth):
            x = self.encoders[level](x)
            skips.append(x)
            x = self.downs[level](x)
        x = self.encoders[self.depth](x)
        for level in reversed(range(self.depth)):
            x = self.ups[level](x)
            x = self.decoders[level](torch.cat((skips[level], x), dim=1))
        return self.head(x)

    def architecture_kwargs(self) -> dict[str, int]:
        """The keyword arguments that rebuild this network (the manifest's ``architecture.kwargs``)."""
        return {
            "dims": self.dims,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "depth": self.depth,
            "base_channels": self.base_channels,
            "out_kernel_size": self.head.kernel_size[0],
        }


def _fold_batchnorm(conv: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Fold an eval-mode batch-norm that follows ``conv`` into the conv's weight and bias."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias.detach() - bn.running_mean * scale
    weight = conv.weight.detach()
    # Conv weights are (out, in, ...); transposed-conv weights are (in, out, ...).
    out_axis = 1 if isinstance(conv, (nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0
    shape = [1] * weight.dim()
    shape[out_axis] = -1
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(shift)
    conv.weight = nn.Parameter(weight * scale.reshape(shape), requires_grad=False)
    conv.bias = nn.Parameter(bias * scale + shift, requires_grad=False)


def fuse_for_inference(network: UNet) -> UNet:
    """A copy of ``network`` for inference with every batch-norm folded into its conv.

    Same outputs as ``network.eval()`` up to float rounding, with one pass over memory less per
    layer. The original is left untouched (training keeps its batch-norm).
    """
    fused = copy.deepcopy(network).eval()
    for block in fused.modules():
        if isinstance(block, DoubleConv):
            _fold_batchnorm(block.conv1, block.bn1)
            _fold_batchnorm(block.conv2, block.bn2)
            block.bn1, block.bn2 = nn.Identity(), nn.Identity()
        elif isinstance(block, Resample):
            _fold_batchnorm(block.conv, block.bn)
            block.bn = nn.Identity()
    for parameter in fused.parameters():
        parameter.requires_grad_(False)
    return fused
