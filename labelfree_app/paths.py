"""Where LabelFree keeps user data. Functions, not constants, so tests can redirect them.

Set ``LABELFREE_HOME`` to put everything (models, settings, cache) under one folder, which is
what the test suite does so it never touches the real home folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "LabelFree"
APP_AUTHOR = "LabelFree"


def _override() -> Path | None:
    value = os.environ.get("LABELFREE_HOME")
    return Path(value) if value else None


def user_data_dir() -> Path:
    """Folder for user data (installed models)."""
    root = _override()
    if root is not None:
        return root / "data"
    return Path(platformdirs.user_data_dir(APP_NAME, APP_AUTHOR))


def user_models_dir() -> Path:
    """Folder where user-installed model packages live."""
    return user_data_dir() / "models"


def user_config_dir() -> Path:
    """Folder for settings (default models per target, recent files)."""
    root = _override()
    if root is not None:
        return root / "config"
    return Path(platformdirs.user_config_dir(APP_NAME, APP_AUTHOR))


def user_cache_dir() -> Path:
    """Folder for disposable caches."""
    root = _override()
    if root is not None:
        return root / "cache"
    return Path(platformdirs.user_cache_dir(APP_NAME, APP_AUTHOR))


def resources_dir() -> Path:
    """The bundled ``resources/`` folder (next to the package, or inside a frozen bundle)."""
    import sys

    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def bundled_models_dir() -> Path:
    """Folder holding the model packages shipped with the app."""
    return resources_dir() / "models"


def demo_dir() -> Path:
    """Folder holding the demo input."""
    return resources_dir() / "demo"


DEMO_IMAGE = "demo_phase_neurons.ome.tif"


def demo_image() -> Path:
    """The demo input: real phase contrast with its DAPI stain (scripts/make_demo_resources.py)."""
    return demo_dir() / DEMO_IMAGE
