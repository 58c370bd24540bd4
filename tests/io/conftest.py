"""Fixtures for the image I/O tests: the real sample folders (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def io_samples(shared_data: Path) -> Path:
    folder = shared_data / "io_samples"
    if not folder.is_dir():
        pytest.skip(f"real reader samples not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def isl_dir(shared_data: Path) -> Path:
    folder = shared_data / "isl_condition_b"
    if not folder.is_dir():
        pytest.skip(f"ISL condition B data not found at {folder}")
    return folder
