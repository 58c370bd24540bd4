"""A U-Net run from its verified cached ONNX export by ONNX Runtime, on numpy arrays only.

When the export of a model's weights is cached and matches its recorded sha256, a prediction needs
neither the network nor torch (whose import alone takes seconds): ``cached_onnx_predictor`` opens it.
Otherwise the engine falls back to ``unet_runner.UNetPredictor``, which exports and caches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labelfree_app.errors import InputShapeError
from labelfree_app.models.architectures import required_multiple
from labelfree_app.models.manifest import Manifest


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


def unet_cache_path(manifest: Manifest) -> Path:
    """Where the ONNX export of this U-Net's weights is cached."""
    from labelfree_app.models.onnx_backend import cache_path

    return cache_path(manifest.weights.sha256, manifest.architecture.id, dict(manifest.architecture.kwargs))


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
    from labelfree_app.core.threads import cpu_threads
    from labelfree_app.models.onnx_backend import OnnxModule, onnx_wanted

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


def int8_onnx_predictor(package: Any, device: Any) -> OnnxUNetPredictor | None:
    """The U-Net of ``package`` as its checked int8 network (``models.onnx_int8``) on ONNX Runtime; None
    when it cannot run here (not the CPU, or the rebuilt network is not the one that was checked).

    The int8 network is cached like the float32 export; it is built from that export (made first
    where it is not cached yet, which imports torch once) and the package's calibrated ranges."""
    from labelfree_app.core.threads import cpu_threads
    from labelfree_app.models.onnx_backend import OnnxModule, _read_verified, _write_cache, onnx_wanted
    from labelfree_app.models.onnx_int8 import build_int8, int8_cache_path, refusal

    manifest: Manifest = package.manifest
    if not onnx_wanted(device) or refusal(manifest.to_dict(), package.path):
        return None
    package.verify()
    path = int8_cache_path(manifest)
    if not path.is_file():
        fp32 = unet_cache_path(manifest)
        data = _read_verified(fp32)
        if data is None:  # export the float32 network once (torch), then read it back verified
            from labelfree_app.core.unet_runner import UNetPredictor

            UNetPredictor(package, device=device, backend="onnx")._onnx_module()
            data = _read_verified(fp32)
        network = build_int8(data, package.path, manifest) if data is not None else None
        if network is None:
            return None
        _write_cache(path, network)
    module = OnnxModule.from_cache(path, ["input"], threads=cpu_threads())
    if module is None:
        return None
    arch = manifest.architecture
    shape = TileShape(int(manifest.dims), int(manifest.input.channels), int(manifest.output.channels),
                      int(required_multiple(arch.id, arch.kwargs) or 16))
    return OnnxUNetPredictor(module, shape, package, precision="int8")
