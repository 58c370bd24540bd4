"""Run a U-Net model package on batches of normalized tiles (the Predictor protocol); beside it,
``diffusion_runner`` runs a diffusion package.

Tiling, padding, blending and normalization live elsewhere in core/; this only runs the network on
(B, C_in, *tile) float32 arrays whose spatial sizes are multiples of ``required_multiple``. When the
network's ONNX export is cached, the engine runs ``runners.OnnxUNetPredictor`` instead (no torch).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from torch import nn

from labelfree_app.core.devices import Device
from labelfree_app.errors import DeviceError
from labelfree_app.models.architectures import TileShape
from labelfree_app.models.manifest import Manifest
from labelfree_app.models.onnx_backend import OnnxModule, onnx_wanted, unet_cache_path
from labelfree_app.models.package import ModelPackage
from labelfree_app.models.unet import UNet, fuse_for_inference


class UNetPredictor:
    """A U-Net ready for inference: batch-norm folded into the convs, channels-last memory layout,
    and fp16 autocast on CUDA by default (``amp=None``; ``amp=True`` on CPU uses bf16).
    Test-time augmentation is the engine's job (``core.engine``), over the whole image.
    """

    dims: int
    in_channels: int
    out_channels: int
    required_multiple: int
    device: torch.device

    def __init__(
        self,
        package: ModelPackage,
        device: Device | torch.device | str = "cpu",
        channels_last: bool = True,
        amp: bool | None = None,
        backend: str = "auto",
    ) -> None:
        self.package: ModelPackage | None = package
        self.manifest: Manifest | None = package.manifest
        self._setup(package.build_network("cpu"), device, channels_last, amp)
        self._onnx: Any = None
        self._use_onnx = not getattr(self.network, "runs_onnx", False) and (
            backend == "onnx" or (backend == "auto" and self._amp_dtype is None and onnx_wanted(self.device)))

    @classmethod
    def from_network(
        cls,
        network: UNet,
        device: torch.device | str = "cpu",
        channels_last: bool = True,
        amp: bool | None = None,
    ) -> UNetPredictor:
        """A predictor for an in-memory network (e.g. during training); ``network`` is not modified."""
        predictor = cls.__new__(cls)
        predictor.package = None
        predictor.manifest = None
        predictor._setup(network, device, channels_last, amp)
        predictor._onnx = None
        predictor._use_onnx = False
        return predictor

    @property
    def backend(self) -> str:
        """"onnxruntime" when ONNX Runtime runs the network (CPU), else "torch"."""
        return "onnxruntime" if self._use_onnx else "torch"

    def _onnx_module(self) -> Any:
        """Export once (cached on disk by weights sha256) and open an ONNX Runtime session."""
        if self._onnx is None:
            from labelfree_app.core.threads import cpu_threads

            cache = unet_cache_path(self.manifest) if self.manifest is not None else None
            network = self.network.to(memory_format=torch.contiguous_format)
            size = (self.required_multiple * 2,) * self.dims
            example = torch.zeros((1, self.in_channels, *size))
            axes = {0: "batch", **{2 + d: f"s{d}" for d in range(self.dims)}}
            self._onnx = OnnxModule(network, [example], ["input"], {"input": axes}, cache_path=cache,
                                    threads=cpu_threads())
        return self._onnx

    def _setup(
        self, network: nn.Module, device: Device | torch.device | str, channels_last: bool, amp: bool | None
    ) -> None:
        self.device = torch.device(str(device))
        self.dims = int(network.dims)
        self.in_channels = int(network.in_channels)
        self.out_channels = int(network.out_channels)
        self.required_multiple = int(network.required_multiple)
        network = fuse_for_inference(network) if isinstance(network, UNet) else network.eval()
        if channels_last:
            self._memory_format = torch.channels_last if self.dims == 2 else torch.channels_last_3d
        else:
            self._memory_format = torch.contiguous_format
        try:
            self.network = network.to(device=self.device, memory_format=self._memory_format)
        except (RuntimeError, AssertionError) as exc:
            raise DeviceError(f"The device '{self.device}' cannot be used ({exc}); choose another device.") from exc
        if amp is None:
            amp = self.device.type == "cuda"
        self._amp_dtype: torch.dtype | None = None
        if amp:
            self._amp_dtype = torch.bfloat16 if self.device.type == "cpu" else torch.float16

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype in use, or None for full float32."""
        return self._amp_dtype

    def _check(self, batch: np.ndarray) -> np.ndarray:
        return TileShape(self.dims, self.in_channels, self.out_channels, self.required_multiple).check(batch)

    def _autocast(self, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self._memory_format)
        with torch.inference_mode():
            with self._autocast(self._amp_dtype):
                y = self.network(x)
            if self._amp_dtype is not None and not bool(torch.isfinite(y).all()):
                # Reduced precision overflowed on this input: fall back to float32 from now on.
                self._amp_dtype = None
                y = self.network(x)
            return y.float().contiguous()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(B, C_in, *tile) float32 normalized tiles -> (B, C_out, *tile) float32."""
        if self._use_onnx:
            return np.ascontiguousarray(self._onnx_module()(self._check(batch)), dtype=np.float32)
        x = torch.from_numpy(self._check(batch))
        return self._forward(x).cpu().numpy()
