"""The fixed table of network architectures a manifest may name, and the tiles a network takes.

A model file names an architecture by id; only ids in this table can be built, so a model
package can never make LabelFree import or run code of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from labelfree_app.errors import InputShapeError, ManifestError

if TYPE_CHECKING:  # torch is imported when a network is built, so the GUI can start without it
    from torch import nn


def _fnet_unet(**kwargs: Any) -> nn.Module:
    from labelfree_app.models.unet import UNet

    return UNet(**kwargs)


def _cond_denoiser(**kwargs: Any) -> nn.Module:
    from labelfree_app.models.diffusion.denoiser import ConditionalDenoiser

    return ConditionalDenoiser(**kwargs)


def _residual_denoiser(**kwargs: Any) -> nn.Module:
    from labelfree_app.models.diffusion.residual import ResidualDenoiser

    return ResidualDenoiser(**kwargs)


def _onnx_graph(**kwargs: Any) -> nn.Module:
    from labelfree_app.models.onnx_network import OnnxNetwork

    return OnnxNetwork(**kwargs)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "fnet_unet": _fnet_unet,
    "cond_denoiser_unet": _cond_denoiser,
    "residual_cond_denoiser": _residual_denoiser,  # a frozen fnet U-Net mean + a denoiser of the residual
    "onnx_graph": _onnx_graph,  # an imported bioimage.io ONNX graph, run by ONNX Runtime (no package code)
}


# Sane ranges for every numeric setting: a manifest asking for more (``base_channels: 100000``)
# would allocate hundreds of GB before failing. (low, high) for numbers; lists are checked per item.
_CHANNELS = (1, 256)
_UNET_BOUNDS: dict[str, tuple[float, float]] = {
    "in_channels": _CHANNELS, "out_channels": _CHANNELS, "depth": (0, 8), "base_channels": (1, 512),
    "out_kernel_size": (1, 15),
}
_DENOISER_BOUNDS: dict[str, tuple[float, float]] = {
    "in_channels": _CHANNELS, "out_channels": _CHANNELS, "base_channels": (1, 512), "num_res_blocks": (1, 8),
    "time_embed_dim": (1, 4096), "dropout": (0.0, 1.0), "patch_size": (1, 16),
}
_LIST_BOUNDS: dict[str, dict[str, tuple[int, tuple[int, int]]]] = {  # name -> (most items, item range)
    "cond_denoiser_unet": {"channel_mults": (8, (1, 16)), "attention_levels": (8, (0, 7))},
}
_RESIDUAL_BOUNDS: dict[str, tuple[float, float]] = {
    "in_channels": _CHANNELS, "out_channels": _CHANNELS, "train_steps": (1, 100_000),
}
_ONNX_BOUNDS: dict[str, tuple[float, float]] = {
    "in_channels": _CHANNELS, "out_channels": _CHANNELS, "required_multiple": (1, 4096),
    "onnx_bytes": (1, 800 * 1024 * 1024),
}
KWARG_BOUNDS: dict[str, dict[str, tuple[float, float]]] = {
    "fnet_unet": _UNET_BOUNDS,
    "onnx_graph": _ONNX_BOUNDS,
    "cond_denoiser_unet": _DENOISER_BOUNDS,
    "residual_cond_denoiser": _RESIDUAL_BOUNDS,
}
_NESTED = {"residual_cond_denoiser": {"mean_net": "fnet_unet", "denoiser": "cond_denoiser_unet"}}  # sub-networks
MAX_PARAMETERS = 200_000_000  # 800 MB of float32 weights; the bundled models have about 2 million


def required_multiple(arch_id: str, kwargs: Mapping[str, Any]) -> int | None:
    """What every spatial size of a tile must be a multiple of, known from the settings alone (no
    network built), or None where only the built network knows."""
    if arch_id == "fnet_unet":
        depth = kwargs.get("depth", 4)  # UNet's default
        return 2**depth if isinstance(depth, int) and not isinstance(depth, bool) and depth >= 0 else None
    if arch_id == "onnx_graph":
        return int(kwargs.get("required_multiple", 1))
    return None


@dataclass(frozen=True)
class TileShape:
    """The tiles a network takes: (B, in_channels, *spatial), each spatial size a multiple."""

    dims: int
    in_channels: int
    out_channels: int
    required_multiple: int

    def check(self, batch: np.ndarray) -> np.ndarray:
        """``batch`` as contiguous float32; InputShapeError when the network cannot take it."""
        batch = np.asarray(batch)
        if batch.ndim != self.dims + 2 or batch.shape[1] != self.in_channels:
            raise InputShapeError(
                f"The model takes tiles of shape (batch, {self.in_channels}, {self.dims} spatial axes) "
                f"but was given {batch.shape}."
            )
        spatial = batch.shape[2:]
        if any(size % self.required_multiple for size in spatial):
            raise InputShapeError(
                f"The tile size {tuple(spatial)} is not a multiple of {self.required_multiple}, "
                "which this network needs; pad the tile first."
            )
        return np.ascontiguousarray(batch, dtype=np.float32)


def kwargs_problem(arch_id: str, kwargs: Mapping[str, Any], prefix: str = "architecture.kwargs") -> tuple[str, str] | None:
    """The first setting of ``kwargs`` outside its sane range, as (dotted field, problem), or None."""
    for name, value in kwargs.items():
        field = f"{prefix}.{name}"
        inner = _NESTED.get(arch_id, {}).get(name)
        if inner is not None:
            if not isinstance(value, Mapping):
                return field, "must be an object of settings"
            problem = kwargs_problem(inner, value, field)
            if problem is not None:
                return problem
        elif name in KWARG_BOUNDS.get(arch_id, {}) and not (name == "time_embed_dim" and value is None):
            low, high = KWARG_BOUNDS[arch_id][name]
            kind, number = ("a number", (int, float)) if isinstance(low, float) else ("an integer", int)
            if isinstance(value, bool) or not isinstance(value, number) or not low <= value <= high:
                return field, f"is {value!r:.40} but must be {kind} between {low:g} and {high:g}"
        elif name in _LIST_BOUNDS.get(arch_id, {}):
            most, (low, high) = _LIST_BOUNDS[arch_id][name]
            if (not isinstance(value, list) or len(value) > most
                    or any(isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high for v in value)):
                return field, f"must be a list of at most {most} integers between {low} and {high}, not {value!r:.60}"
    return None


def parameter_count(arch_id: str, kwargs: dict[str, Any]) -> int:
    """How many parameters the network would have, counted on the meta device (nothing is allocated).

    Raises TypeError or ValueError as building the network would.
    """
    import torch

    with torch.device("meta"):
        network = ARCHITECTURES[arch_id](**kwargs)
    return sum(p.numel() for p in network.parameters())


def network_problem(arch_id: str, kwargs: dict[str, Any]) -> tuple[str, str] | None:
    """What is wrong with building ``arch_id`` from ``kwargs``, as (dotted field, problem), or None:
    a setting out of range, settings the network refuses, or too many parameters in all."""
    problem = kwargs_problem(arch_id, kwargs)
    if problem is not None:
        return problem
    from labelfree_app.models.parameter_counts import remembered_parameter_count

    try:  # settings each in range can still multiply up to an absurd network
        count = remembered_parameter_count(arch_id, kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        return "architecture.kwargs", f"does not fit the architecture '{arch_id}' ({exc})"
    if count > MAX_PARAMETERS:
        return "architecture.kwargs", (f"describes a network of {count / 1e6:,.0f} million parameters, "
                                       f"more than the {MAX_PARAMETERS / 1e6:,.0f} million LabelFree accepts")
    return None


def build_network(arch_id: str, kwargs: dict[str, Any], *, source: str | Path | None = None) -> nn.Module:
    """Build the network ``arch_id`` from the fixed table with ``kwargs``.

    ``source`` (the manifest file) is named in the error when the id or the settings are bad.
    """
    where = f" in {source}" if source is not None else ""
    factory = ARCHITECTURES.get(arch_id)
    if factory is None:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ManifestError(
            f"The model names an unknown architecture '{arch_id}' (field 'architecture.id'{where}); "
            f"known architectures are: {known}.",
            field="architecture.id",
            path=source,
        )
    try:
        return factory(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ManifestError(
            f"The model's architecture settings do not fit '{arch_id}' (field 'architecture.kwargs'{where}): {exc}.",
            field="architecture.kwargs",
            path=source,
        ) from exc
