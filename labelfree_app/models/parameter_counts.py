"""How many parameters a network of the fixed table has, counted once and remembered.

Counting builds the network on torch's meta device, and importing torch takes seconds, so every
count is kept in the user cache (``parameter-counts.json``), keyed by the architecture, its settings
and the LabelFree and torch versions: reading a known manifest (listing models, a prediction on
ONNX Runtime) then needs no torch. A cache that cannot be read or written only costs the count.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_FILE = "parameter-counts.json"
MAX_ENTRIES = 256  # a few per installed model; the oldest go first


def _cache_file() -> Path:
    from labelfree_app.paths import user_cache_dir

    return user_cache_dir() / CACHE_FILE


def _key(arch_id: str, kwargs: dict[str, Any]) -> str:
    from labelfree_app import __version__
    from labelfree_app.torch_build import torch_version

    text = json.dumps([arch_id, kwargs, __version__, torch_version()], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _read(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)}


def remembered_parameter_count(arch_id: str, kwargs: dict[str, Any]) -> int:
    """``architectures.parameter_count``, from the cache when these settings were counted before.

    Raises TypeError or ValueError as building the network would (such settings are not remembered)."""
    from labelfree_app.models.architectures import parameter_count

    key, path = _key(arch_id, kwargs), _cache_file()
    counts = _read(path)
    if key in counts:
        return counts[key]
    count = parameter_count(arch_id, kwargs)
    counts = {**dict(list(_read(path).items())[-(MAX_ENTRIES - 1):]), key: count}
    _write(path, counts)
    return count


def _write(path: Path, counts: dict[str, int]) -> None:
    from labelfree_app.errors import LabelFreeError
    from labelfree_app.io.atomic import atomic_write_bytes

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, (json.dumps(counts, indent=0) + "\n").encode("utf-8"))
    except (OSError, LabelFreeError) as exc:
        log.info("could not remember parameter counts in %s: %s", path, exc)
