"""A network that is an ONNX graph (imported from bioimage.io), run by ONNX Runtime.

The graph's bytes are stored in the package's safetensors as one uint8 tensor (``onnx_model``), so
the package stays manifest + safetensors with a sha256, and the architecture table builds this
module like any other. ONNX is a declarative graph of standard operators: ONNX Runtime evaluates
it without running any Python from the package (custom-operator libraries are never loaded).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

ONNX_KEY = "onnx_model"
MAX_ONNX_BYTES = 800 * 1024 * 1024


class OnnxNetwork(nn.Module):
    """(B, in_channels, *spatial) -> (B, out_channels, *spatial), computed by ONNX Runtime on the CPU."""

    runs_onnx = True  # the predictor must not try to re-export it with torch.onnx

    def __init__(self, dims: int = 2, in_channels: int = 1, out_channels: int = 1, required_multiple: int = 1,
                 onnx_bytes: int = 1) -> None:
        super().__init__()
        for name, value in (("dims", dims), ("in_channels", in_channels), ("out_channels", out_channels),
                            ("required_multiple", required_multiple), ("onnx_bytes", onnx_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, not {value!r}")
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, not {dims!r}")
        self.dims = dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.required_multiple = required_multiple
        self.register_buffer(ONNX_KEY, torch.zeros(onnx_bytes, dtype=torch.uint8))
        self._session: Any = None

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self._session is None:
            import onnxruntime as ort

            data = getattr(self, ONNX_KEY).cpu().numpy().tobytes()
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            self._session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        name = self._session.get_inputs()[0].name
        return self._session.run(None, {name: x})[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().float().cpu().numpy())
        return torch.from_numpy(np.asarray(self._run(array), dtype=np.float32)).to(x.device)
