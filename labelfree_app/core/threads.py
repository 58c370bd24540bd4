"""How many CPU threads the networks use, known without importing torch.

ONNX Runtime and torch get the same count: torch's own once torch is loaded, else the default torch
would take (``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS``, else the physical cores). A count the app
asks for (the window leaves a core free) is kept until torch is loaded, then handed to it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import psutil

_wanted: int | None = None  # set_cpu_threads' count, not yet handed to torch


def default_cpu_threads() -> int:
    """The count torch starts with: ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS``, else the physical cores."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def set_cpu_threads(count: int) -> None:
    """Run the networks on ``count`` threads (torch's now if it is loaded, else once it is)."""
    global _wanted
    _wanted = max(1, int(count))
    sync_torch_threads()


def cpu_threads() -> int:
    """The threads a network runs on now."""
    torch = sync_torch_threads()
    if torch is not None:
        return int(torch.get_num_threads())
    return _wanted or default_cpu_threads()


def sync_torch_threads() -> Any:
    """Hand a pending ``set_cpu_threads`` count to torch when torch is loaded; torch, or None."""
    global _wanted
    torch = sys.modules.get("torch")
    if torch is not None and _wanted is not None:
        if torch.get_num_threads() != _wanted:
            torch.set_num_threads(_wanted)
        _wanted = None
    return torch
