"""Run a network with ONNX Runtime on the CPU, where it measured ~2× faster than eager PyTorch.

The network is exported once (legacy TorchScript-based exporter, dynamic batch and spatial axes)
and the ``.onnx`` file cached under the user cache folder, keyed by the weights' sha256 and the
library versions, so later runs start the session directly. ``LABELFREE_BACKEND=torch`` turns it off.

Opening the cache needs no torch (``OnnxModule.from_cache``; the key reads torch's version from its
version.py): torch is imported only to export.

The cache is never trusted blindly: its own sha256 is recorded beside it (``<key>.onnx.sha256``) when
it is written, and a cache file that does not match its record, has none, or that ONNX Runtime cannot
open is deleted (with a warning) and exported again from the network, whose weights were verified.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from labelfree_app.torch_build import torch_version

if TYPE_CHECKING:  # torch is imported only to export: a verified cached export runs without it
    import torch
    from torch import nn

log = logging.getLogger(__name__)

CHECKSUM_SUFFIX = ".sha256"  # the record beside each cached export: <key>.onnx.sha256


def onnx_wanted(device: Any) -> bool:
    """True when ONNX Runtime should run this network: CPU device, library present, not disabled.

    ``device`` is anything with a ``type`` ("cpu", "cuda", "mps"): a torch.device or core.devices.Device."""
    if device.type != "cpu" or os.environ.get("LABELFREE_BACKEND", "auto").lower() == "torch":
        return False
    # found, not imported: onnx (which the exporter needs) takes ~0.5 s to import and a cached run never uses it
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


def cache_key(weights_sha256: str, arch: str, kwargs: dict, extra: str = "") -> str:
    """A file name that changes whenever the weights, architecture or libraries change."""
    import onnxruntime

    text = f"{weights_sha256}|{arch}|{sorted(kwargs.items())}|{torch_version()}|{onnxruntime.__version__}|{extra}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_path(weights_sha256: str, arch: str, kwargs: dict, extra: str = "") -> Path:
    """Where the export of this network is cached (``cache_key`` under the user cache folder)."""
    from labelfree_app.paths import user_cache_dir

    return user_cache_dir() / "onnx" / f"{cache_key(weights_sha256, arch, kwargs, extra)}.onnx"


def unet_cache_path(manifest: Any) -> Path:
    """Where the ONNX export of a U-Net's weights is cached (``manifest``: its ``models.manifest.Manifest``)."""
    return cache_path(manifest.weights.sha256, manifest.architecture.id, dict(manifest.architecture.kwargs))


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
        session: dict[str, Any] | None = None,
    ) -> None:
        import torch

        self._configure(input_names, threads or torch.get_num_threads(), session)
        if cache_path is not None and (opened := self._open_cached(cache_path)) is not None:
            self.session = opened
            return
        model_bytes = _export(network, tuple(example_inputs), list(input_names), dynamic_axes)
        if cache_path is not None:
            write_cache(cache_path, model_bytes)
        self.session = self._session(model_bytes)

    @classmethod
    def from_cache(
        cls, cache_path: Path, input_names: Sequence[str], threads: int, session: dict[str, Any] | None = None
    ) -> OnnxModule | None:
        """The verified cached export in ONNX Runtime, without torch; None when there is none that
        matches its record and opens (a bad one is deleted, as on every open)."""
        module = cls.__new__(cls)
        module._configure(input_names, threads, session)
        opened = module._open_cached(cache_path)
        if opened is None:
            return None
        module.session = opened
        return module

    def _configure(self, input_names: Sequence[str], threads: int, session: dict[str, Any] | None) -> None:
        self.input_names = list(input_names)
        self.threads = threads
        self.session_settings = dict(session or {})

    def _open_cached(self, cache_path: Path) -> Any:
        """A session on the cached export when it is verified and opens, else None (and it is deleted)."""
        cached = read_verified_cache(cache_path)
        if cached is None:
            return None
        try:
            return self._session(cached)
        except Exception as exc:  # noqa: BLE001  ONNX Runtime's errors derive from Exception only
            log.info("ONNX Runtime could not open %s: %s", cache_path, exc)
            _discard(cache_path, "ONNX Runtime could not open it")
            return None

    def _session(self, model_bytes: bytes) -> Any:
        import onnxruntime as ort

        options = session_options(self.threads, **self.session_settings)
        return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        feeds = {name: np.ascontiguousarray(a) for name, a in zip(self.input_names, arrays)}
        return self.session.run(None, feeds)[0]


def session_options(
    threads: int,
    *,
    level: Any = None,
    parallel: bool = False,
    arena: bool = True,
    spinning: bool | None = None,
) -> Any:
    """ONNX Runtime session options: ``threads`` intra-op threads, full graph optimization (conv
    fusions, NCHWc layout) unless ``level`` says otherwise; the variants exist for
    benchmarks/bench_unet_gflops.py (``parallel``: parallel execution mode with 2 inter-op threads;
    ``arena``: the CPU memory arena; ``spinning``: whether idle intra-op threads spin)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL if level is None else level
    if parallel:
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        options.inter_op_num_threads = 2
    options.enable_cpu_mem_arena = arena
    # The memory-pattern planner keeps a second block per input shape (~100-200 MB at our tiles) for no
    # measurable speed: 8192² U-Net peak 1,267 -> 1,061 MiB, 512² diffusion 947 -> 748 MiB, wall ±1 %.
    options.enable_mem_pattern = False
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


def _record_path(cache_path: Path) -> Path:
    return cache_path.with_name(cache_path.name + CHECKSUM_SUFFIX)


def _discard(cache_path: Path, reason: str) -> None:
    """Delete a cached export and its record, saying why (a warning: the user should know)."""
    log.warning("The cached ONNX network %s was deleted because %s; it is rebuilt from the verified weights.",
                cache_path, reason)
    for path in (cache_path, _record_path(cache_path)):
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.info("could not delete %s: %s", path, exc)


def read_verified_cache(cache_path: Path) -> bytes | None:
    """The cached export when it matches the sha256 recorded beside it; otherwise None (and a
    mismatched or unrecorded cache file is deleted)."""
    try:
        data = cache_path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        _discard(cache_path, f"it cannot be read ({exc.strerror or exc})")
        return None
    try:
        recorded = _record_path(cache_path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        _discard(cache_path, "it has no checksum record")
        return None
    if hashlib.sha256(data).hexdigest() != recorded:
        _discard(cache_path, "it does not match its recorded checksum (it was changed or damaged)")
        return None
    return data


def write_cache(cache_path: Path, data: bytes) -> None:
    """Write the export, then its sha256 record, each atomically; a cache that cannot be written only
    costs time."""
    from labelfree_app.errors import LabelFreeError
    from labelfree_app.io.atomic import atomic_write_bytes

    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache_path, data)
        atomic_write_bytes(_record_path(cache_path), (hashlib.sha256(data).hexdigest() + "\n").encode("ascii"))
    except (OSError, LabelFreeError) as exc:  # atomic writes raise ImageWriteError subclasses
        log.info("could not cache ONNX export at %s: %s", cache_path, exc)


# torch.onnx.export keeps global state: two threads exporting at once (a run and the window's step
# timing, a batch beside it) fail with "GLOBALS.in_onnx_export must be True".
_EXPORT_LOCK = threading.Lock()


def _export(
    network: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> bytes:
    """The network as ONNX bytes (legacy TorchScript-based exporter, opset 17)."""
    import torch

    buffer = io.BytesIO()
    with _EXPORT_LOCK, warnings.catch_warnings():  # warnings' filters are process-wide too
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network.eval(), example_inputs, buffer, input_names=input_names,
            output_names=["output"], dynamic_axes={**dynamic_axes, "output": dynamic_axes[input_names[0]]},
            opset_version=17, dynamo=False,
        )
    return buffer.getvalue()
