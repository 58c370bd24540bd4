"""Run a U-Net model package on batches of normalized tiles (the Predictor protocol).

Tiling, padding, blending and normalization live outside (core/); this only runs the network on
(B, C_in, *tile) float32 arrays whose spatial sizes are multiples of ``required_multiple``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from labelfree_app.errors import DeviceError, InputShapeError
from labelfree_app.models.manifest import Manifest
from labelfree_app.models.onnx_backend import onnx_wanted
from labelfree_app.models.package import ModelPackage
from labelfree_app.models.unet import UNet, fuse_for_inference

Transform = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


class UNetPredictor:
    """A U-Net ready for inference: batch-norm folded into the convs, channels-last memory layout,
    fp16 autocast on CUDA by default (``amp=None``; ``amp=True`` on CPU uses bf16), and optional
    test-time augmentation (``tta=True`` makes ``predict`` return the mean over flips/rotations).
    """

    dims: int
    in_channels: int
    out_channels: int
    required_multiple: int
    device: torch.device

    def __init__(
        self,
        package: ModelPackage,
        device: torch.device | str = "cpu",
        channels_last: bool = True,
        amp: bool | None = None,
        tta: bool = False,
        backend: str = "auto",
    ) -> None:
        self.package: ModelPackage | None = package
        self.manifest: Manifest | None = package.manifest
        self._setup(package.build_network("cpu"), device, channels_last, amp, tta)
        self._onnx: Any = None
        self._use_onnx = backend == "onnx" or (backend == "auto" and self._amp_dtype is None
                                                and onnx_wanted(self.device))

    @classmethod
    def from_network(
        cls,
        network: UNet,
        device: torch.device | str = "cpu",
        channels_last: bool = True,
        amp: bool | None = None,
        tta: bool = False,
    ) -> UNetPredictor:
        """A predictor for an in-memory network (e.g. during training); ``network`` is not modified."""
        predictor = cls.__new__(cls)
        predictor.package = None
        predictor.manifest = None
        predictor._setup(network, device, channels_last, amp, tta)
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
            from labelfree_app.models.onnx_backend import OnnxModule, cache_key
            from labelfree_app.paths import user_cache_dir

            cache = None
            if self.manifest is not None:
                key = cache_key(self.manifest.weights.sha256, self.manifest.architecture.id,
                                dict(self.manifest.architecture.kwargs))
                cache = user_cache_dir() / "onnx" / f"{key}.onnx"
            network = self.network.to(memory_format=torch.contiguous_format)
            size = (self.required_multiple * 2,) * self.dims
            example = torch.zeros((1, self.in_channels, *size))
            axes = {0: "batch", **{2 + d: f"s{d}" for d in range(self.dims)}}
            self._onnx = OnnxModule(network, [example], ["input"], {"input": axes}, cache_path=cache)
        return self._onnx

    def _setup(
        self, network: nn.Module, device: torch.device | str, channels_last: bool, amp: bool | None, tta: bool
    ) -> None:
        self.device = torch.device(device)
        self.dims = int(network.dims)
        self.in_channels = int(network.in_channels)
        self.out_channels = int(network.out_channels)
        self.required_multiple = int(network.required_multiple)
        self.tta = tta
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
        if self.tta:
            return self.predict_tta(batch)[0]
        if self._use_onnx:
            return np.ascontiguousarray(self._onnx_module()(self._check(batch)), dtype=np.float32)
        x = torch.from_numpy(self._check(batch))
        return self._forward(x).cpu().numpy()

    def predict_tta(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and (population) variance of the predictions over test-time augmentations.

        Flips of Y and X and, where Y == X, 90-degree rotations in the YX plane: 8 views for a
        square tile, 4 otherwise. Z is never flipped (the optics are not symmetric along Z).
        """
        x = torch.from_numpy(self._check(batch))
        count = 0
        mean = m2 = None
        for forward, inverse in _yx_transforms(x.shape):
            y = inverse(self._forward(forward(x))).cpu()
            count += 1
            if mean is None:
                mean, m2 = y.clone(), torch.zeros_like(y)
                continue
            delta = y - mean
            mean += delta / count
            m2 += delta * (y - mean)
        return mean.numpy(), (m2 / count).numpy()


def _yx_transforms(shape: tuple[int, ...]) -> Iterator[Transform]:
    """(forward, inverse) pairs of the symmetries of the last two axes that keep ``shape``."""
    y_axis, x_axis = len(shape) - 2, len(shape) - 1
    square = shape[y_axis] == shape[x_axis]
    for rotations in (0, 1, 2, 3) if square else (0, 2):
        for flip in (False, True):

            def forward(t: torch.Tensor, k: int = rotations, f: bool = flip) -> torch.Tensor:
                t = torch.rot90(t, k, dims=(y_axis, x_axis)) if k else t
                return torch.flip(t, dims=(x_axis,)) if f else t

            def inverse(t: torch.Tensor, k: int = rotations, f: bool = flip) -> torch.Tensor:
                t = torch.flip(t, dims=(x_axis,)) if f else t
                return torch.rot90(t, -k, dims=(y_axis, x_axis)) if k else t

            yield forward, inverse
