"""The provenance block every output carries (TIFF description, OME-Zarr attributes)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from labelfree_app import __version__


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"provenance value {value!r} cannot be stored as JSON")


def provenance_block(provenance: Mapping[str, Any] | None) -> dict[str, Any]:
    """The caller's provenance plus the app name, version and time of writing (caller wins)."""
    block: dict[str, Any] = {
        "app": "LabelFree",
        "app_version": __version__,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    block.update(provenance or {})
    return json.loads(json.dumps(block, default=_jsonable))
