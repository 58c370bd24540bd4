"""Compute devices: pick cuda -> mps -> cpu at run time, describe them, read free memory.

torch is imported only where a GPU could be there: on a machine where torch surely finds none (a
CPU-only torch off macOS, or Linux without a GPU driver) "auto" is the CPU without loading torch,
so a prediction that runs on ONNX Runtime never needs it.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psutil

from labelfree_app.errors import DeviceError, SettingsError
from labelfree_app.torch_build import torch_is_cpu_only

if TYPE_CHECKING:
    import torch

_OOM_PHRASES = ("out of memory", "can't allocate memory", "not enough memory")
_GPU_DRIVER_NODES = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/dxg", "/dev/kfd")  # NVIDIA, WSL2, ROCm


@dataclass(frozen=True)
class Device:
    """A device as torch names it ("cpu", "cuda:0", "mps"), known without importing torch."""

    type: str  # "cpu" | "cuda" | "mps"
    index: int | None = None

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"


@dataclass(frozen=True)
class DeviceInfo:
    """One usable device, e.g. name "cuda:0", kind "cuda", label "NVIDIA RTX 4090 (24 GB)"."""

    name: str
    kind: str  # "cuda" | "mps" | "cpu"
    label: str
    total_memory: int | None = None  # bytes
    free_memory: int | None = None  # bytes, at the time of the query


@functools.lru_cache(maxsize=1)
def _gpu_possible() -> bool:
    """False only when torch surely finds no GPU: a CPU-only torch off macOS (mps), or Linux without
    a GPU driver's device nodes."""
    if sys.platform == "darwin":
        return True
    if torch_is_cpu_only():
        return False
    if sys.platform.startswith("linux"):
        return any(os.path.exists(node) for node in _GPU_DRIVER_NODES)
    return True


def _torch_if_gpu_possible() -> Any:
    """torch when it is loaded already or a GPU could be there (then it is imported); else None."""
    if "torch" in sys.modules or _gpu_possible():
        import torch

        return torch
    return None


def _mps_available() -> bool:
    torch = _torch_if_gpu_possible()
    mps = getattr(getattr(torch, "backends", None), "mps", None)
    return bool(mps is not None and mps.is_available())


def _cuda_count() -> int:
    torch = _torch_if_gpu_possible()
    if torch is None:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def choose_device(preference: str | Device | torch.device | None = "auto") -> Device:
    """The device to run on: "auto" (cuda -> mps -> cpu), or "cuda", "cuda:N", "mps", "cpu".

    An explicit request for a device this machine lacks raises ``DeviceError``."""
    choice = str(preference or "auto").strip().lower()
    if choice == "auto":
        if _cuda_count() > 0:
            return Device("cuda", _current_cuda())
        if _mps_available():
            return Device("mps")
        return Device("cpu")
    if choice == "cpu":
        return Device("cpu")
    if choice == "mps":
        if _mps_available():
            return Device("mps")
        raise _unavailable("the Apple GPU (mps)")
    if choice == "cuda" or choice.startswith("cuda:"):
        index_text = choice.partition(":")[2]
        if index_text and not index_text.isdigit():
            raise _unknown(preference)
        index = int(index_text) if index_text else 0
        if index < _cuda_count():
            return Device("cuda", index if index_text else _current_cuda())
        raise _unavailable(f"CUDA device '{choice}'" if index_text else "a CUDA GPU")
    raise _unknown(preference)


def parse_device(name: str) -> Device:
    """``name`` ("cpu", "cuda", "cuda:1", "mps"…) as a Device, whether or not this machine has it;
    ValueError when it is no device name."""
    kind, colon, index = str(name).strip().lower().partition(":")
    if not kind.isidentifier() or (colon and not index.isdigit()):
        raise ValueError(f"{name!r} is not a device name")
    return Device(kind, int(index) if colon else None)


def check_loaded_on(wanted: str, loaded: Device) -> None:
    """Refuse (``SettingsError``) settings that name a device other than "auto" and other than ``loaded``,
    the device a model was loaded on, rather than silently ignore them."""
    if wanted.strip().lower() == "auto":
        return
    try:
        asked = parse_device(wanted)
    except ValueError:
        raise SettingsError(f"The device must be auto, cpu, cuda, cuda:N or mps, not {wanted!r}.") from None
    if asked.type != loaded.type or (asked.index is not None and asked.index != (loaded.index or 0)):
        raise SettingsError(f"The settings ask for device {wanted} but this model was loaded on {loaded}; "
                            f"load it with device {wanted!r} or set the device to auto.")


def select_device(preference: str | Device | torch.device | None = "auto") -> torch.device:
    """``choose_device`` as a torch.device (for code that runs torch)."""
    import torch

    return torch.device(str(choose_device(preference)))


def _current_cuda() -> int:
    import torch

    return int(torch.cuda.current_device())


def available_devices() -> list[DeviceInfo]:
    """Every device this machine can run on, the preferred one first; the CPU is always last."""
    devices: list[DeviceInfo] = []
    for index in range(_cuda_count()):
        import torch

        props = torch.cuda.get_device_properties(index)
        total = int(props.total_memory)
        devices.append(DeviceInfo(f"cuda:{index}", "cuda", f"{props.name} ({_gigabytes(total)})", total,
                                  free_memory_bytes(f"cuda:{index}")))
    if _mps_available():
        total = _mps_total_memory()
        label = f"Apple GPU (mps, {_gigabytes(total)})" if total else "Apple GPU (mps)"
        devices.append(DeviceInfo("mps", "mps", label, total, free_memory_bytes("mps")))
    cores = os.cpu_count() or 1
    memory = psutil.virtual_memory()
    devices.append(DeviceInfo("cpu", "cpu", f"CPU ({cores} core{'s' if cores != 1 else ''})",
                              int(memory.total), int(memory.available)))
    return devices


def free_memory_bytes(device: str | Device | torch.device) -> int | None:
    """Bytes a new allocation on ``device`` can use now, or None when it cannot be known.

    On CUDA this counts the driver's free memory plus what PyTorch has cached but not used."""
    kind, _, index_text = str(device).partition(":")
    if kind == "cpu":
        return int(psutil.virtual_memory().available)
    if kind not in ("cuda", "mps"):
        return None
    import torch

    if kind == "cuda":
        index = int(index_text) if index_text else torch.cuda.current_device()
        free, _total = torch.cuda.mem_get_info(index)
        cached = torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
        return int(free + max(cached, 0))
    total = _mps_total_memory()
    if total is None:
        return None
    return max(int(total - torch.mps.driver_allocated_memory()), 0)


def release_cached_memory(device: str | Device | torch.device) -> None:
    """Give the memory torch's CUDA allocator keeps cached back to the GPU (before a retry)."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says a device (CUDA, MPS or the CPU allocator) ran out of memory."""
    torch = sys.modules.get("torch")  # torch's own error can only come from a loaded torch
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return any(phrase in text for phrase in _OOM_PHRASES)
    return False


def _mps_total_memory() -> int | None:
    torch = _torch_if_gpu_possible()
    recommended = getattr(getattr(torch, "mps", None), "recommended_max_memory", None)
    if recommended is None:
        return None
    try:
        return int(recommended())
    except RuntimeError:  # raised when the mps backend is not usable on this machine
        return None


def _gigabytes(n_bytes: int | None) -> str:
    if not n_bytes:
        return "memory unknown"
    gib = n_bytes / 2**30
    return f"{gib:.0f} GB" if gib >= 10 else f"{gib:.1f} GB"


def _available_names() -> str:
    return ", ".join(f"{d.name} ({d.label})" for d in available_devices())


def _unavailable(what: str) -> DeviceError:
    return DeviceError(f"{what[0].upper()}{what[1:]} is not available on this computer; the available devices are: "
                       f"{_available_names()}; choose one of those or 'auto'.")


def _unknown(preference: object) -> DeviceError:
    return DeviceError(f"'{preference}' is not a device name; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' "
                       f"(available here: {_available_names()}).")
