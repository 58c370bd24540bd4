"""Batch test fixtures: small synthetic fields (bright-field + Hoechst) and tiny model packages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labelfree_app.io import write_image
from labelfree_app.synthetic import render_cells
from tests.factories import make_diffusion_package, make_unet_package

ROOT = Path(__file__).resolve().parents[2]


def write_field(path: Path, *, seed: int, shape: tuple[int, int] = (64, 80)) -> Path:
    cells = render_cells(shape, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, np.stack([cells.brightfield, cells.nuclei])[:, None], "CZYX",
                channel_names=["Brightfield", "Hoechst"])
    return path


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
