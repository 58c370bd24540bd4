"""Compute devices: pick cuda -> mps -> cpu at run time, describe them, read free memory."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil
import torch

from labelfree_app.errors import DeviceError

_OOM_PHRASES = ("out of memory", "can't allocate memory", "not enough memory")


@dataclass(frozen=True)
class DeviceInfo:
    """One usable device, e.g. name "cuda:0", kind "cuda", label "NVIDIA RTX 4090 (24 GB)"."""

    name: str
    kind: str  # "cuda" | "mps" | "cpu"
    label: str
    total_memory: int | None = None  # bytes
    free_memory: int | None = None  # bytes, at the time of the query


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def select_device(preference: str | torch.device = "auto") -> torch.device:
    """The device to run on: "auto" (cuda -> mps -> cpu), or "cuda", "cuda:N", "mps", "cpu".

    An explicit request for a device this machine lacks raises ``DeviceError``."""
    if isinstance(preference, torch.device):
        preference = str(preference)
    choice = (preference or "auto").strip().lower()
    if choice == "auto":
        if _cuda_count() > 0:
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "mps":
        if _mps_available():
            return torch.device("mps")
        raise _unavailable("the Apple GPU (mps)")
    if choice == "cuda" or choice.startswith("cuda:"):
        index_text = choice.partition(":")[2]
        if index_text and not index_text.isdigit():
            raise _unknown(preference)
        index = int(index_text) if index_text else 0
        if index < _cuda_count():
            return torch.device("cuda", index) if index_text else torch.device("cuda", torch.cuda.current_device())
        raise _unavailable(f"CUDA device '{choice}'" if index_text else "a CUDA GPU")
    raise _unknown(preference)


def available_devices() -> list[DeviceInfo]:
    """Every device this machine can run on, the preferred one first; the CPU is always last."""
    devices: list[DeviceInfo] = []
    for index in range(_cuda_count()):
        props = torch.cuda.get_device_properties(index)
        total = int(props.total_memory)
        devices.append(DeviceInfo(f"cuda:{index}", "cuda", f"{props.name} ({_gigabytes(total)})", total,
                                  free_memory_bytes(torch.device("cuda", index))))
    if _mps_available():
        total = _mps_total_memory()
        label = f"Apple GPU (mps, {_gigabytes(total)})" if total else "Apple GPU (mps)"
        devices.append(DeviceInfo("mps", "mps", label, total, free_memory_bytes(torch.device("mps"))))
    cores = os.cpu_count() or 1
    memory = psutil.virtual_memory()
    devices.append(DeviceInfo("cpu", "cpu", f"CPU ({cores} core{'s' if cores != 1 else ''})",
                              int(memory.total), int(memory.available)))
    return devices


def free_memory_bytes(device: torch.device | str) -> int | None:
    """Bytes a new allocation on ``device`` can use now, or None when it cannot be known.

    On CUDA this counts the driver's free memory plus what PyTorch has cached but not used."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        free, _total = torch.cuda.mem_get_info(index)
        cached = torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
        return int(free + max(cached, 0))
    if device.type == "mps":
        total = _mps_total_memory()
        if total is None:
            return None
        return max(int(total - torch.mps.driver_allocated_memory()), 0)
    if device.type == "cpu":
        return int(psutil.virtual_memory().available)
    return None


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says a device (CUDA, MPS or the CPU allocator) ran out of memory."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return any(phrase in text for phrase in _OOM_PHRASES)
    return False


def _mps_total_memory() -> int | None:
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
