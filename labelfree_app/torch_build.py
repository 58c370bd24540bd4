"""What the installed torch is (its version, the GPU back-ends it was built with), read from torch's
own ``version.py`` without importing torch, which takes seconds."""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from pathlib import Path

_ASSIGNMENT = re.compile(r"^(\w+)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)


@functools.lru_cache(maxsize=1)
def torch_build() -> dict[str, object] | None:
    """The constants of torch's ``version.py`` (``__version__``, ``cuda``, ``hip``, ``xpu``…), or None
    when torch or that file is not found."""
    spec = importlib.util.find_spec("torch")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        try:
            text = (Path(folder) / "version.py").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        values: dict[str, object] = {}
        for name, value in _ASSIGNMENT.findall(text):
            try:
                values[name] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                continue
        if isinstance(values.get("__version__"), str):
            return values
    return None


def torch_version() -> str:
    """``torch.__version__`` (torch takes it from the same file); torch is imported only when the file is not found."""
    build = torch_build()
    if build is not None:
        return str(build["__version__"])
    import torch

    return str(torch.__version__)


def torch_is_cpu_only() -> bool:
    """True when the installed torch was built without CUDA, ROCm and XPU (False when unsure)."""
    build = torch_build()
    return build is not None and all(build.get(name) is None for name in ("cuda", "hip", "xpu"))
