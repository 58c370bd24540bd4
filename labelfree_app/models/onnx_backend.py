"""Run a network with ONNX Runtime on the CPU, where it measured ~2× faster than eager PyTorch.

The network is exported once (legacy TorchScript-based exporter, dynamic batch and spatial axes)
and the ``.onnx`` file cached under the user cache folder, keyed by the weights' sha256 and the
library versions, so later runs start the session directly. ``LABELFREE_BACKEND=torch`` turns it off.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


def onnx_wanted(device: torch.device) -> bool:
    """True when ONNX Runtime should run this network: CPU device, library present, not disabled."""
    if device.type != "cpu" or os.environ.get("LABELFREE_BACKEND", "auto").lower() == "torch":
        return False
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def cache_key(weights_sha256: str, arch: str, kwargs: dict, extra: str = "") -> str:
    """A file name that changes whenever the weights, architecture or libraries change."""
    import onnxruntime

    text = f"{weights_sha256}|{arch}|{sorted(kwargs.items())}|{torch.__version__}|{onnxruntime.__version__}|{extra}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class OnnxModule:
    """A network exported to ONNX and run with ONNX Runtime on numpy arrays."""

    def __init__(
        self,
        network: nn.Module,
        example_inputs: Sequence[torch.Tensor],
        input_names: Sequence[str],
        dynamic_axes: dict[str, dict[int, str]],
        cache_path: Path | None = None,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        model_bytes = self._load_or_export(network, example_inputs, input_names, dynamic_axes, cache_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        self.input_names = list(input_names)

    @staticmethod
    def _load_or_export(
        network: nn.Module,
        example_inputs: Sequence[torch.Tensor],
        input_names: Sequence[str],
        dynamic_axes: dict[str, dict[int, str]],
        cache_path: Path | None,
    ) -> bytes:
        if cache_path is not None and cache_path.is_file():
            return cache_path.read_bytes()
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                network.eval(), tuple(example_inputs), buffer, input_names=list(input_names),
                output_names=["output"], dynamic_axes={**dynamic_axes, "output": dynamic_axes[input_names[0]]},
                opset_version=17, dynamo=False,
            )
        data = buffer.getvalue()
        if cache_path is not None:
            try:
                from labelfree_app.io.atomic import atomic_write_bytes

                cache_path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(cache_path, data)
            except OSError as exc:  # a cache that cannot be written only costs time
                log.info("could not cache ONNX export at %s: %s", cache_path, exc)
        return data

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        feeds = {name: np.ascontiguousarray(a) for name, a in zip(self.input_names, arrays)}
        return self.session.run(None, feeds)[0]
