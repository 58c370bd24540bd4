"""The conditional denoiser: a small ADM-style U-Net conditioned on a transmitted-light image.

The network takes the noisy target ``x_t`` concatenated with the condition (bright-field, or a
z-stack as channels) and a timestep ``t``; it returns ``out_channels`` channels (eps, v or x0,
as the model's manifest says). Width and depth are constructor arguments, so a small CPU model and
a large GPU model share this code. Works in 2D and 3D (Conv3d; attention flattens any grid).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from labelfree_app.errors import InputShapeError


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (B, dim) of timesteps ``t`` (B,), which may be fractional."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t.to(torch.float32)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


def _norm(channels: int) -> nn.GroupNorm:
    # Groups of at least 4 channels; 32 groups once the layer is wide enough (as in ADM).
    for groups in (32, 16, 8, 4, 2, 1):
        if channels % groups == 0 and channels // groups >= 4:
            return nn.GroupNorm(groups, channels)
    return nn.GroupNorm(1, channels)


def _conv(dims: int, cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Module:
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    return conv(cin, cout, kernel, stride=stride, padding=kernel // 2)


def space_to_depth(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, *S) -> (B, C * p**dims, *S/p): each p-sided block of pixels becomes channels."""
    if p == 1:
        return x
    b, c, *sizes = x.shape
    dims = len(sizes)
    split = [v for n in sizes for v in (n // p, p)]
    x = x.reshape(b, c, *split)
    order = [0, 1, *range(3, 3 + 2 * dims, 2), *range(2, 2 + 2 * dims, 2)]
    return x.permute(order).reshape(b, c * p**dims, *(n // p for n in sizes))


def depth_to_space(x: torch.Tensor, p: int) -> torch.Tensor:
    """The inverse of :func:`space_to_depth`."""
    if p == 1:
        return x
    b, c, *sizes = x.shape
    dims = len(sizes)
    x = x.reshape(b, c // p**dims, *([p] * dims), *sizes)
    order = [0, 1, *(v for i in range(dims) for v in (2 + dims + i, 2 + i))]
    return x.permute(order).reshape(b, c // p**dims, *(n * p for n in sizes))


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with scale-shift (FiLM) conditioning from the time embedding."""

    def __init__(self, dims: int, cin: int, cout: int, embed_dim: int, dropout: float) -> None:
        super().__init__()
        self.in_norm = _norm(cin)
        self.in_conv = _conv(dims, cin, cout)
        self.embed = nn.Linear(embed_dim, 2 * cout)
        self.out_norm = _norm(cout)
        self.dropout = nn.Dropout(dropout)
        self.out_conv = _zero(_conv(dims, cout, cout))
        self.skip = nn.Identity() if cin == cout else _conv(dims, cin, cout, kernel=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_conv(F.silu(self.in_norm(x)))
        scale, shift = self.embed(F.silu(emb)).chunk(2, dim=1)
        extra = (1,) * (h.dim() - 2)
        h = self.out_norm(h) * (1 + scale.view(*scale.shape, *extra)) + shift.view(*shift.shape, *extra)
        h = self.out_conv(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over all grid positions (use at low resolution only)."""

    def __init__(self, channels: int, head_channels: int = 32) -> None:
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = _norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c = x.shape[:2]
        flat = x.reshape(b, c, -1)
        q, k, v = self.qkv(self.norm(flat)).reshape(b, 3, self.heads, c // self.heads, -1).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        out = out.transpose(-1, -2).reshape(b, c, -1)
        return x + self.proj(out).reshape(x.shape)


class Downsample(nn.Module):
    def __init__(self, dims: int, channels: int) -> None:
        super().__init__()
        self.conv = _conv(dims, channels, channels, stride=2)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, dims: int, channels: int) -> None:
        super().__init__()
        self.conv = _conv(dims, channels, channels)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Stage(nn.ModuleList):
    """Layers applied in order; residual blocks also receive the time embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb)
        return x


class ConditionalDenoiser(nn.Module):
    """ADM-style U-Net: ``forward(x_t, t, cond)`` -> (B, out_channels, *spatial).

    ``in_channels`` counts the condition channels, ``out_channels`` the target channels; the
    network sees both concatenated. ``t`` is in the training timestep scale (0..train_steps-1,
    fractional allowed). Spatial sizes must be multiples of ``required_multiple``.

    ``patch_size`` > 1 folds each p-sided block of pixels into channels before the first layer
    and unfolds the output (space-to-depth), so the U-Net runs at 1/p resolution: about p**dims
    times cheaper, the lever for CPU speed on large images.
    """

    def __init__(
        self,
        dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        base_channels: int = 32,
        channel_mults: tuple[int, ...] | list[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_levels: tuple[int, ...] | list[int] = (),
        time_embed_dim: int | None = None,
        dropout: float = 0.0,
        patch_size: int = 1,
    ) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, not {dims}")
        mults = tuple(int(m) for m in channel_mults)
        if not mults or num_res_blocks < 1 or base_channels < 1:
            raise ValueError("channel_mults must be non-empty; num_res_blocks and base_channels >= 1")
        if patch_size < 1:
            raise ValueError(f"patch_size must be 1 or more, not {patch_size}")
        attention = {int(level) for level in attention_levels}
        if not attention <= set(range(len(mults))):
            raise ValueError(f"attention_levels {sorted(attention)} must be in 0..{len(mults) - 1}")
        self.dims = dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.patch_size = int(patch_size)
        self.required_multiple = self.patch_size * 2 ** (len(mults) - 1)
        self.base_channels = base_channels
        embed_dim = time_embed_dim or 4 * base_channels
        self.time_mlp = nn.Sequential(
            nn.Linear(base_channels, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim)
        )
        folded = self.patch_size**dims
        self.stem = _conv(dims, (out_channels + in_channels) * folded, base_channels)

        def block(cin: int, cout: int, level: int) -> list[nn.Module]:
            layers: list[nn.Module] = [ResBlock(dims, cin, cout, embed_dim, dropout)]
            if level in attention:
                layers.append(SelfAttention(cout))
            return layers

        self.down = nn.ModuleList()
        skip_channels = [base_channels]
        ch = base_channels
        for level, mult in enumerate(mults):
            for _ in range(num_res_blocks):
                self.down.append(_Stage(block(ch, mult * base_channels, level)))
                ch = mult * base_channels
                skip_channels.append(ch)
            if level < len(mults) - 1:
                self.down.append(_Stage([Downsample(dims, ch)]))
                skip_channels.append(ch)

        deepest = len(mults) - 1
        middle: list[nn.Module] = [ResBlock(dims, ch, ch, embed_dim, dropout)]
        if deepest in attention:
            middle.append(SelfAttention(ch))
        middle.append(ResBlock(dims, ch, ch, embed_dim, dropout))
        self.middle = _Stage(middle)

        self.up = nn.ModuleList()
        for level in reversed(range(len(mults))):
            for i in range(num_res_blocks + 1):
                layers = block(ch + skip_channels.pop(), mults[level] * base_channels, level)
                ch = mults[level] * base_channels
                if level > 0 and i == num_res_blocks:
                    layers.append(Upsample(dims, ch))
                self.up.append(_Stage(layers))

        self.head = nn.Sequential(_norm(ch), nn.SiLU(), _zero(_conv(dims, ch, out_channels * folded)))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | float, cond: torch.Tensor) -> torch.Tensor:
        """Predict eps / v / x0 for the noisy target ``x_t`` given the condition ``cond``."""
        self._check_shapes(x_t, cond)
        batch = x_t.shape[0]
        t = torch.as_tensor(t, device=x_t.device)
        if t.dim() == 0:
            t = t.expand(batch)
        emb = self.time_mlp(timestep_embedding(t, self.base_channels).to(x_t.dtype))
        h = self.stem(space_to_depth(torch.cat([x_t, cond.to(x_t.dtype)], dim=1), self.patch_size))
        skips = [h]
        for stage in self.down:
            h = stage(h, emb)
            skips.append(h)
        h = self.middle(h, emb)
        for stage in self.up:
            h = stage(torch.cat([h, skips.pop()], dim=1), emb)
        return depth_to_space(self.head(h), self.patch_size)

    def _check_shapes(self, x_t: torch.Tensor, cond: torch.Tensor) -> None:
        spatial = tuple(x_t.shape[2:])
        if x_t.dim() != self.dims + 2 or x_t.shape[1] != self.out_channels:
            raise InputShapeError(
                f"The denoiser expects a noisy target of shape (B, {self.out_channels}, "
                f"{self.dims} spatial axes) but got {tuple(x_t.shape)}."
            )
        if cond.shape[1:] != (self.in_channels, *spatial) or cond.shape[0] != x_t.shape[0]:
            raise InputShapeError(
                f"The denoiser expects a condition image with {self.in_channels} channel(s) of the "
                f"same size as the target {spatial} but got {tuple(cond.shape)}."
            )
        if any(size % self.required_multiple for size in spatial):
            raise InputShapeError(
                f"The denoiser needs image sides that are multiples of {self.required_multiple}, "
                f"but got {spatial}; pad or tile the image."
            )
