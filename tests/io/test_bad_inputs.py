"""Every bad input gets its own LabelFreeError subclass, whose message names the file."""

from __future__ import annotations

import os
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile

from labelfree_app.errors import (
    ChannelError,
    CorruptImageError,
    EmptyImageError,
    FileAccessError,
    UnsupportedDtypeError,
    UnsupportedFormatError,
)
from labelfree_app.io import read_image, read_plane_series
from labelfree_app.io import reading
from tests.io.synthetic import ramp


def assert_names_file(error: BaseException, path: Path) -> None:
    assert str(path) in str(error)
    assert "Traceback" not in str(error)


def test_jpeg_renamed_tif_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "photo.tif"
    path.write_bytes(imagecodecs.jpeg8_encode(ramp((16, 16), "uint8")))
    with pytest.raises(UnsupportedFormatError) as caught:
        read_image(path)
    assert_names_file(caught.value, path)
    assert "JPEG" in str(caught.value)


def test_text_file_renamed_tif_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "notes.tif"
    path.write_text("these are my notes, not an image\n")
    with pytest.raises(UnsupportedFormatError) as caught:
        read_image(path)
    assert_names_file(caught.value, path)


def test_zero_size_file_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "empty.tif"
    path.touch()
    with pytest.raises(CorruptImageError) as caught:
        read_image(path)
    assert_names_file(caught.value, path)


def test_tiff_cut_inside_its_header_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "header.tif"
    path.write_bytes(b"II*")
    with pytest.raises(CorruptImageError) as caught:
        read_image(path)
    assert_names_file(caught.value, path)


def test_tiff_header_followed_by_garbage_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "garbage.tif"
    path.write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    with pytest.raises(CorruptImageError) as caught:
        read_image(path)
    assert_names_file(caught.value, path)


def _write_variant(path: Path, kind: str) -> None:
    data = ramp((3, 4, 32, 32), "uint16")  # C Z Y X
    if kind == "imagej":
        tifffile.imwrite(path, data.transpose(1, 0, 2, 3), imagej=True, metadata={"axes": "ZCYX"})
    elif kind == "ome":
        tifffile.imwrite(path, data, ome=True, metadata={"axes": "CZYX"})
    elif kind == "ome_zlib":
        tifffile.imwrite(path, data, ome=True, compression="zlib", metadata={"axes": "CZYX"})
    elif kind == "plain_pages":
        with tifffile.TiffWriter(path) as writer:
            for page in data.reshape(12, 32, 32):
                writer.write(page, metadata=None, photometric="minisblack")
    elif kind == "single_page":
        tifffile.imwrite(path, data[0, 0], metadata=None)
    elif kind == "bigtiff_lzw":
        tifffile.imwrite(path, data, bigtiff=True, compression="lzw", ome=True, metadata={"axes": "CZYX"})


@pytest.mark.parametrize("kind", ["imagej", "ome", "ome_zlib", "plain_pages", "single_page", "bigtiff_lzw"])
@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8, 0.97])
@pytest.mark.parametrize("channel", [None, 1], ids=["all", "one-channel"])
def test_truncated_tiff_is_corrupt_never_a_partial_image(
    tmp_path: Path, kind: str, fraction: float, channel: int | None
) -> None:
    whole = tmp_path / "whole.tif"
    _write_variant(whole, kind)
    content = whole.read_bytes()
    path = tmp_path / f"cut_{kind}.tif"
    path.write_bytes(content[: int(len(content) * fraction)])
    if channel is not None and kind in ("plain_pages", "single_page"):
        channel = 0
    with pytest.raises(CorruptImageError) as caught:
        read_image(path, channel=channel)
    assert_names_file(caught.value, path)


def test_truncated_png_is_corrupt(tmp_path: Path) -> None:
    content = imagecodecs.png_encode(ramp((64, 64), "uint16"))
    path = tmp_path / "cut.png"
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(CorruptImageError) as caught:
        read_image(path)
    assert_names_file(caught.value, path)


@pytest.mark.parametrize("dtype", ["complex64", "bool"])
def test_complex_and_boolean_pixels_are_unsupported(tmp_path: Path, dtype: str) -> None:
    path = tmp_path / f"{dtype}.tif"
    tifffile.imwrite(path, np.ones((8, 8), dtype=dtype))
    with pytest.raises(UnsupportedDtypeError) as caught:
        read_image(path)
    assert_names_file(caught.value, path)


@pytest.mark.parametrize("fill", [np.nan, np.inf])
def test_image_without_a_finite_value_is_empty(tmp_path: Path, fill: float) -> None:
    path = tmp_path / "nan.tif"
    tifffile.imwrite(path, np.full((2, 8, 8), fill, np.float32))
    with pytest.raises(EmptyImageError) as caught:
        read_image(path)
    assert_names_file(caught.value, path)


def test_one_nan_channel_is_empty_when_picked_but_the_file_reads(tmp_path: Path) -> None:
    data = np.ones((2, 8, 8), np.float32)
    data[1] = np.nan
    path = tmp_path / "half_nan.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "CYX"})
    assert read_image(path).shape == (2, 1, 8, 8)
    assert read_image(path, channel=0).shape == (1, 1, 8, 8)
    with pytest.raises(EmptyImageError):
        read_image(path, channel=1)


def test_unknown_channel_name_or_index_lists_the_channels(tmp_path: Path) -> None:
    path = tmp_path / "named.ome.tif"
    tifffile.imwrite(path, ramp((2, 8, 8), "uint16"), ome=True,
                     metadata={"axes": "CYX", "Channel": {"Name": ["BF", "GFP"]}})
    for bad in ("mCherry", 2, -1):
        with pytest.raises(ChannelError) as caught:
            read_image(path, channel=bad)
        assert_names_file(caught.value, path)
        assert '"BF"' in str(caught.value) and '"GFP"' in str(caught.value)


def test_missing_path_is_a_file_access_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.tif"
    with pytest.raises(FileAccessError) as caught:
        read_image(path)
    assert_names_file(caught.value, path)


def test_folder_is_a_file_access_error(tmp_path: Path) -> None:
    with pytest.raises(FileAccessError) as caught:
        read_image(tmp_path)
    assert_names_file(caught.value, tmp_path)


def test_unreadable_file_is_a_file_access_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.tif"
    tifffile.imwrite(path, ramp((8, 8), "uint8"))
    if os.geteuid() != 0:
        path.chmod(0)
    else:  # root reads anything: make the open itself fail as it would for a user
        def denied(*args: object, **kwargs: object) -> None:
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(reading, "open", denied, raising=False)
    with pytest.raises(FileAccessError) as caught:
        read_image(path)
    assert_names_file(caught.value, path)


def test_plane_series_with_an_odd_plane_names_that_file(tmp_path: Path) -> None:
    for z in range(3):
        (tmp_path / f"z{z}.png").write_bytes(imagecodecs.png_encode(ramp((16, 16), "uint16")))
    odd = tmp_path / "z10.png"
    odd.write_bytes(imagecodecs.png_encode(ramp((16, 18), "uint16")))
    with pytest.raises(Exception) as caught:
        read_plane_series(tmp_path / "z*.png")
    assert_names_file(caught.value, odd)
    odd.write_bytes(imagecodecs.png_encode(ramp((16, 16), "uint8")))
    with pytest.raises(Exception) as caught:
        read_plane_series(tmp_path / "z*.png")
    assert_names_file(caught.value, odd)


def test_plane_series_glob_without_matches_is_a_file_access_error(tmp_path: Path) -> None:
    with pytest.raises(FileAccessError) as caught:
        read_plane_series(tmp_path / "nothing-*.png")
    assert str(tmp_path) in str(caught.value)
