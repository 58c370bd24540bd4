"""Assembling a z-stack from single-plane files."""

from __future__ import annotations

import random
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile

from labelfree_app.errors import ImageReadError
from labelfree_app.io import read_plane_series
from labelfree_app.io.reading import natural_sort_key


def write_planes(folder: Path, depths: list[int], name: str = "z_depth-{}_BF.png") -> list[Path]:
    paths = []
    for z in depths:
        path = folder / name.format(z)
        path.write_bytes(imagecodecs.png_encode(np.full((6, 8), 1000 + z, np.uint16)))
        paths.append(path)
    return paths


def test_natural_sort_puts_2_before_10() -> None:
    names = ["z_depth-10_a.png", "z_depth-2_a.png", "z_depth-1_a.png", "Z_depth-0_a.png"]
    assert sorted(names, key=natural_sort_key) == ["Z_depth-0_a.png", "z_depth-1_a.png", "z_depth-2_a.png",
                                                   "z_depth-10_a.png"]


def test_glob_pattern_stacks_planes_in_natural_order(tmp_path: Path) -> None:
    write_planes(tmp_path, list(range(12)))
    stack = read_plane_series(str(tmp_path / "z_depth-*_BF.png"))
    assert stack.shape == (1, 12, 6, 8)
    assert stack.data[0, :, 0, 0].tolist() == [1000 + z for z in range(12)]
    assert stack.channel_names == ("BF",)
    assert stack.path is None
    assert len(stack.metadata["plane_paths"]) == 12


def test_list_of_paths_in_any_order_is_sorted(tmp_path: Path) -> None:
    paths = write_planes(tmp_path, [0, 1, 2, 10, 11])
    random.Random(3).shuffle(paths)
    stack = read_plane_series(paths)
    assert stack.data[0, :, 0, 0].tolist() == [1000, 1001, 1002, 1010, 1011]


def test_single_file_gives_a_one_plane_stack(tmp_path: Path) -> None:
    (path,) = write_planes(tmp_path, [4])
    stack = read_plane_series(path)
    assert stack.shape == (1, 1, 6, 8)
    assert stack.channel_names == ("C0",)


def test_tiff_planes_keep_their_pixel_size(tmp_path: Path) -> None:
    for z in range(3):
        tifffile.imwrite(tmp_path / f"plane_{z}.ome.tif", np.full((5, 5), z, np.float32), ome=True,
                         metadata={"axes": "YX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2})
    stack = read_plane_series(tmp_path / "plane_*.ome.tif")
    assert stack.dtype == np.float32
    assert stack.pixel_size_um == pytest.approx({"X": 0.2, "Y": 0.2})


def test_multi_plane_file_in_a_series_is_refused_by_name(tmp_path: Path) -> None:
    write_planes(tmp_path, [0, 1])
    stack_file = tmp_path / "z_depth-2_BF.tif"
    tifffile.imwrite(stack_file, np.zeros((3, 6, 8), np.uint16), photometric="minisblack",
                     metadata={"axes": "ZYX"})
    with pytest.raises(ImageReadError) as caught:
        read_plane_series(tmp_path / "z_depth-*_BF.*")
    assert str(stack_file) in str(caught.value)
