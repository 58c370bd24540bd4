"""The fixed table of network architectures a manifest may name.

A model file names an architecture by id; only ids in this table can be built, so a model
package can never make LabelFree import or run code of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from torch import nn

from labelfree_app.errors import ManifestError


def _fnet_unet(**kwargs: Any) -> nn.Module:
    from labelfree_app.models.unet import UNet

    return UNet(**kwargs)


def _cond_denoiser(**kwargs: Any) -> nn.Module:
    from labelfree_app.models.diffusion.denoiser import ConditionalDenoiser

    return ConditionalDenoiser(**kwargs)


def _residual_denoiser(**kwargs: Any) -> nn.Module:
    from labelfree_app.models.diffusion.residual import ResidualDenoiser

    return ResidualDenoiser(**kwargs)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "fnet_unet": _fnet_unet,
    "cond_denoiser_unet": _cond_denoiser,
    "residual_cond_denoiser": _residual_denoiser,  # a frozen fnet U-Net mean + a denoiser of the residual
}


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
