"""The test run a model gets before it is installed: its network, with its weights, once on a small input."""

from __future__ import annotations

from labelfree_app.errors import LabelFreeError, ModelError
from labelfree_app.models.package import ModelPackage

_SMOKE_SEED = 0


def run_smoke_test(package: ModelPackage) -> None:
    """Build the network with its weights and run it once on a small random input.

    A U-Net gets one (1, C, *spatial) tensor, a diffusion denoiser ``(x_t, t, cond)``; a network
    may instead define ``example_inputs(batch, spatial_shape) -> tuple[Tensor, ...]``.
    The output must be finite with shape (1, output.channels, *spatial).
    """
    import torch  # here, not at the top: the registry imports this module on every prediction

    manifest = package.manifest
    network = package.build_network("cpu")
    multiple = int(getattr(network, "required_multiple", 16))
    spatial = (max(multiple, 8),) * manifest.dims
    generator = torch.Generator().manual_seed(_SMOKE_SEED)
    example_inputs = getattr(network, "example_inputs", None)
    if callable(example_inputs):
        inputs = tuple(example_inputs(1, spatial))
    elif manifest.kind == "diffusion":
        # The conditional denoiser's forward(x_t, t, cond).
        train_steps = manifest.diffusion.train_steps if manifest.diffusion else 1000
        inputs = (
            torch.randn((1, manifest.output.channels, *spatial), generator=generator),
            torch.full((1,), float(train_steps // 2)),
            torch.randn((1, manifest.input.channels, *spatial), generator=generator),
        )
    else:
        channels = int(getattr(network, "in_channels", manifest.input.channels))
        inputs = (torch.randn((1, channels, *spatial), generator=generator),)
    expected = (1, manifest.output.channels, *spatial)
    try:
        with torch.inference_mode():
            output = network(*inputs)
    except (LabelFreeError, RuntimeError, TypeError, ValueError) as exc:
        raise ModelError(
            f"The model {package.origin} failed its test run on a {spatial} input ({exc}); it was not installed.",
            path=package.origin,
        ) from exc
    if tuple(output.shape) != expected:
        raise ModelError(
            f"The model {package.origin} gave an output of shape {tuple(output.shape)} instead of {expected} "
            "in its test run; it was not installed.",
            path=package.origin,
        )
    if not bool(torch.isfinite(output).all()):
        raise ModelError(
            f"The model {package.origin} gave non-finite values in its test run; it was not installed.",
            path=package.origin,
        )
