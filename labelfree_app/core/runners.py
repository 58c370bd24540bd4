"""Which runner runs a model, and the U-Net runner that needs no torch.

A U-Net whose verified ONNX export is cached runs on it through ONNX Runtime on numpy arrays
(``OnnxUNetPredictor``: torch, whose import alone takes seconds, is not imported), as its checked int8
network where that was asked for and runs here. Otherwise the torch runners run the model:
``unet_runner`` (which exports and caches that file where ONNX Runtime runs the network) and
``diffusion_runner``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labelfree_app.core.devices import Device
from labelfree_app.core.settings import is_diffusion
from labelfree_app.core.threads import cpu_threads, sync_torch_threads
from labelfree_app.models.architectures import TileShape, required_multiple
from labelfree_app.models.manifest import Manifest
from labelfree_app.models.onnx_backend import OnnxModule, onnx_wanted, unet_cache_path


def load_runner(package: Any, manifest: dict[str, Any], device: Device, precision: str | None = "fp32") -> Any:
    """The loaded runner of ``package`` (its manifest as a dict) on ``device``; with ``precision`` "int8"
    a U-Net's checked int8 network where it runs here (its ``precision`` says; else float32)."""
    if is_diffusion(manifest["kind"]):
        from labelfree_app.core.diffusion_runner import DiffusionRunner

        runner: Any = DiffusionRunner(package, manifest, device)
    else:
        onnx = onnx_predictor(package, manifest, device, precision)
        if onnx is not None:
            return onnx
        from labelfree_app.core.unet_runner import UNetPredictor

        runner = UNetPredictor(package, device=device)
    sync_torch_threads()  # a count asked for before torch was loaded (the window leaves a core free)
    return runner


def onnx_predictor(package: Any, manifest: dict[str, Any], device: Any,
                   precision: str | None = "fp32") -> OnnxUNetPredictor | None:
    """The U-Net of ``package`` (its manifest as a dict) on ONNX Runtime, without torch: its checked int8
    network where ``precision`` is "int8" and it runs here, else its verified cached float32 export;
    None when there is neither."""
    if precision == "int8":
        int8 = int8_onnx_predictor(package, manifest, device)
        if int8 is not None:
            return int8
    return cached_onnx_predictor(package, device)


class OnnxUNetPredictor:
    """The Predictor protocol over a cached ONNX export: ``predict`` (B, C_in, *tile) -> (B, C_out, *tile)."""

    backend = "onnxruntime"

    def __init__(self, module: Any, shape: TileShape, package: Any, precision: str = "fp32") -> None:
        self._module = module
        self.precision = precision  # "fp32", or "int8" for the checked quantized network
        self.shape = shape
        self.package = package
        self.manifest: Manifest = package.manifest
        self.dims = shape.dims
        self.in_channels = shape.in_channels
        self.out_channels = shape.out_channels
        self.required_multiple = shape.required_multiple

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(B, C_in, *tile) float32 normalized tiles -> (B, C_out, *tile) float32."""
        return np.ascontiguousarray(self._module(self.shape.check(batch)), dtype=np.float32)


def cached_onnx_predictor(package: Any, device: Any) -> OnnxUNetPredictor | None:
    """The U-Net of ``package`` on its verified cached export, when ONNX Runtime is to run it on
    ``device`` (see ``onnx_backend.onnx_wanted``) and that export exists; else None.

    The weights are still checked against the manifest's sha256, as when the network is built."""
    manifest: Manifest = package.manifest
    arch = manifest.architecture
    multiple = required_multiple(arch.id, arch.kwargs)
    if arch.id != "fnet_unet" or multiple is None or not onnx_wanted(device):
        return None
    path = unet_cache_path(manifest)
    if not path.is_file():
        return None
    package.verify()
    module = OnnxModule.from_cache(path, ["input"], threads=cpu_threads())
    if module is None:
        return None
    shape = TileShape(int(manifest.dims), int(manifest.input.channels), int(manifest.output.channels), multiple)
    return OnnxUNetPredictor(module, shape, package)


def int8_onnx_predictor(package: Any, manifest_dict: dict[str, Any], device: Any) -> OnnxUNetPredictor | None:
    """The U-Net of ``package`` (``manifest_dict``: its manifest as a dict) as its checked int8 network
    (``models.onnx_int8``) on ONNX Runtime; None when it cannot run here (not the CPU, or the rebuilt
    network is not the one that was checked).

    The int8 network is cached like the float32 export; it is built from that export (made first
    where it is not cached yet, which imports torch once) and the package's calibrated ranges."""
    from labelfree_app.models.onnx_backend import read_verified_cache, write_cache
    from labelfree_app.models.onnx_int8 import build_int8, int8_cache_path, refusal

    manifest: Manifest = package.manifest
    if not onnx_wanted(device) or refusal(manifest_dict, package.path):
        return None
    package.verify()
    path = int8_cache_path(manifest)
    if not path.is_file():
        fp32 = unet_cache_path(manifest)
        data = read_verified_cache(fp32)
        if data is None:  # export the float32 network once (torch), then read it back verified
            from labelfree_app.core.unet_runner import UNetPredictor

            UNetPredictor(package, device=device, backend="onnx")._onnx_module()
            data = read_verified_cache(fp32)
        network = build_int8(data, package.path, manifest) if data is not None else None
        if network is None:
            return None
        write_cache(path, network)
    module = OnnxModule.from_cache(path, ["input"], threads=cpu_threads())
    if module is None:
        return None
    arch = manifest.architecture
    shape = TileShape(int(manifest.dims), int(manifest.input.channels), int(manifest.output.channels),
                      int(required_multiple(arch.id, arch.kwargs) or 16))
    return OnnxUNetPredictor(module, shape, package, precision="int8")
