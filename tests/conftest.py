"""Shared fixtures: user folders point at a temp dir; real data is found or the test skips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def labelfree_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own LABELFREE_HOME, so the real home folder is never touched."""
    home = tmp_path_factory.mktemp("labelfree_home")
    monkeypatch.setenv("LABELFREE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder, or a skip with the reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real microscopy data not found at {SHARED_DATA} (../shared/data)")
    return SHARED_DATA


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("LABELFREE_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip_slow = pytest.mark.skip(reason="slow check: set LABELFREE_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
