"""Which runner runs a model: a U-Net's verified cached ONNX export when there is one (torch is not
imported), else the torch runners side by side (``unet_runner``, which exports and caches that file
where ONNX Runtime runs the network, and ``diffusion_runner``)."""

from __future__ import annotations

from typing import Any

from labelfree_app.core.devices import Device
from labelfree_app.core.onnx_runner import cached_onnx_predictor
from labelfree_app.core.settings import is_diffusion
from labelfree_app.core.threads import sync_torch_threads


def load_runner(package: Any, manifest: dict[str, Any], device: Device, precision: str | None = "fp32") -> Any:
    """The loaded runner of ``package`` (its manifest as a dict) on ``device``; with ``precision`` "int8"
    a U-Net's checked int8 network where it runs here (its ``precision`` says; else float32)."""
    if precision == "int8" and not is_diffusion(manifest["kind"]):
        from labelfree_app.core.onnx_runner import int8_onnx_predictor

        int8 = int8_onnx_predictor(package, device)
        if int8 is not None:
            return int8
    if is_diffusion(manifest["kind"]):
        from labelfree_app.core.diffusion_runner import DiffusionRunner

        runner: Any = DiffusionRunner(package, manifest, device)
    else:
        cached = cached_onnx_predictor(package, device)
        if cached is not None:
            return cached
        from labelfree_app.core.unet_runner import UNetPredictor

        runner = UNetPredictor(package, device=device)
    sync_torch_threads()  # a count asked for before torch was loaded (the window leaves a core free)
    return runner
