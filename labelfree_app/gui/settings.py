"""GUI settings that survive a restart, kept as one JSON file in the user config folder.

A JSON file (not QSettings) so tests can point it at a temp folder through ``LABELFREE_HOME``
and a person can read it. Writes are atomic: a temp file renamed over the old one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from labelfree_app import paths
from labelfree_app.errors import LabelFreeError
from labelfree_app.io.atomic import atomic_write_bytes

MAX_RECENT_FILES = 10
SETTINGS_FILE_NAME = "gui_settings.json"

_log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "recent_files": [],
    "last_folder": "",
    "export_folder": "",  # File ▸ Export: changed only when the user picks a folder for it
    "batch_folder": "",  # File ▸ Batch export's output folder (never the export folder)
    "watch_folder": "",  # File ▸ Watch folder…: the folder last watched and where its predictions went
    "watch_output_folder": "",
    "device": "auto",
    "diffusion": {"samples": None, "steps": None, "sampler": None, "seed": 0},
    "tta": False,
    "last_model_id": "",
    "window_geometry": "",
    "window_state": "",
}


def settings_path() -> Path:
    """Where the GUI settings file lives (honours ``LABELFREE_HOME``)."""
    return paths.user_config_dir() / SETTINGS_FILE_NAME


class GuiSettings:
    """A small key/value store with the keys in ``DEFAULTS``; ``save()`` writes it to disk."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else settings_path()
        self._values: dict[str, Any] = json.loads(json.dumps(DEFAULTS))
        self._load()

    def _load(self) -> None:
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            # A damaged settings file must never stop the app from starting.
            _log.warning("ignoring unreadable settings file %s: %s", self.path, exc)
            return
        if isinstance(stored, dict):
            for key, value in stored.items():
                if key in DEFAULTS:
                    self._values[key] = value

    def get(self, key: str) -> Any:
        return self._values.get(key, DEFAULTS.get(key))

    def set(self, key: str, value: Any) -> None:
        if key not in DEFAULTS:
            raise KeyError(f"unknown GUI setting {key!r}")
        self._values[key] = value

    def add_recent_file(self, path: str | Path) -> list[str]:
        """Put ``path`` first in the recent list (no duplicates, at most ``MAX_RECENT_FILES``)."""
        text = str(Path(path))
        recent = [p for p in self.get("recent_files") if p != text]
        recent.insert(0, text)
        self._values["recent_files"] = recent[:MAX_RECENT_FILES]
        return list(self._values["recent_files"])

    def save(self) -> None:
        """Write the settings atomically; a failure is logged, not raised (settings are a convenience)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.path, json.dumps(self._values, indent=2).encode("utf-8"))
        except (OSError, LabelFreeError) as exc:
            _log.warning("could not save settings to %s: %s", self.path, exc)
