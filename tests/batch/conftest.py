"""Batch test fixtures: small synthetic fields (bright-field + Hoechst) and tiny model packages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import make_diffusion_package, make_unet_package, write_field

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def fields_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "fields"
    write_field(folder / "a.tif", seed=1)
    write_field(folder / "b.tif", seed=2)
    write_field(folder / "sub" / "c.tif", seed=3)
    return folder


@pytest.fixture()
def unet_package(tmp_path: Path):
    return make_unet_package(tmp_path / "models")


@pytest.fixture()
def diffusion_package(tmp_path: Path):
    return make_diffusion_package(tmp_path / "models")
