"""TIFF flavours and PNG written with other tools: compression, BigTIFF, byte order, layouts, RGB."""

from __future__ import annotations

from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile

from labelfree_app.errors import ChannelError, RGBImageError
from labelfree_app.io import read_image
from tests.io.synthetic import ramp


COMPRESSED_CASES = [
    (compression, dtype)
    for compression in ("lzw", "zlib", "packbits", "zstd")
    for dtype in ("uint8", "uint16", "int16", "float32")
    if not (compression == "packbits" and dtype == "float32")  # PackBits is for integer data
]


@pytest.mark.parametrize(("compression", "dtype"), COMPRESSED_CASES)
def test_compressed_tiffs_read_losslessly(tmp_path: Path, compression: str, dtype: str) -> None:
    data = ramp((3, 2, 16, 20), dtype)  # C Z Y X
    path = tmp_path / f"{compression}.ome.tif"
    tifffile.imwrite(path, data, ome=True, compression=compression, metadata={"axes": "CZYX"})
    image = read_image(path)
    assert image.metadata["compression"] in {"lzw", "adobe_deflate", "deflate", "packbits", "zstd"}
    np.testing.assert_array_equal(image.data, data)
    np.testing.assert_array_equal(read_image(path, channel=2).data[0], data[2])


def test_bigtiff_reads_like_classic_tiff(tmp_path: Path) -> None:
    data = ramp((2, 3, 10, 12), "uint16")
    path = tmp_path / "big.ome.tif"
    tifffile.imwrite(path, data, ome=True, bigtiff=True, metadata={"axes": "ZCYX"})
    image = read_image(path)
    assert image.metadata["bigtiff"] is True
    np.testing.assert_array_equal(image.data, data.transpose(1, 0, 2, 3))


@pytest.mark.parametrize("dtype", ["uint16", "int16", "float32", "float64", "int32", "uint32"])
def test_big_endian_tiff_gives_the_same_numbers_as_little_endian(tmp_path: Path, dtype: str) -> None:
    data = ramp((3, 9, 11), dtype)
    for order in "<>":
        tifffile.imwrite(tmp_path / f"{dtype}{order}.tif", data, byteorder=order, photometric="minisblack",
                         metadata={"axes": "ZYX"})
    little = read_image(tmp_path / f"{dtype}<.tif")
    big = read_image(tmp_path / f"{dtype}>.tif")
    assert big.metadata["byteorder"] == "big"
    assert big.dtype == little.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(big.data, little.data)
    np.testing.assert_array_equal(big.data[0], data)


def write_plain_pages(path: Path, pages: np.ndarray, **kwargs: object) -> None:
    """One IFD per plane and no description, like MetaMorph or old acquisition software."""
    with tifffile.TiffWriter(path, **kwargs) as writer:
        for page in pages:
            writer.write(page, metadata=None, photometric="minisblack")


def test_plain_multipage_tiff_becomes_a_z_stack(tmp_path: Path) -> None:
    pages = ramp((6, 8, 10), "uint16")
    path = tmp_path / "plain.tif"
    write_plain_pages(path, pages)
    image = read_image(path)
    assert image.metadata["source_axes"] in ("IYX", "QYX")
    assert image.shape == (1, 6, 8, 10)
    np.testing.assert_array_equal(image.data[0], pages)


def test_plain_multipage_big_endian_bigtiff_reads(tmp_path: Path) -> None:
    pages = ramp((4, 8, 10), "int16")
    path = tmp_path / "plain_be_big.tif"
    write_plain_pages(path, pages, bigtiff=True, byteorder=">")
    image = read_image(path)
    assert image.metadata["bigtiff"] and image.metadata["byteorder"] == "big"
    np.testing.assert_array_equal(image.data[0], pages)


def test_metamorph_metaseries_tiff_gives_pixel_size_and_illumination_name(tmp_path: Path) -> None:
    description = (
        "<MetaData>"
        '<prop id="Description" type="string" value="test"/>'
        "<PlaneInfo>"
        '<prop id="spatial-calibration-x" type="float" value="0.645"/>'
        '<prop id="spatial-calibration-y" type="float" value="0.645"/>'
        '<prop id="spatial-calibration-units" type="string" value="um"/>'
        '<prop id="_IllumSetting_" type="string" value="Phase"/>'
        "</PlaneInfo>"
        "</MetaData>"
    )
    data = ramp((12, 14), "uint16")
    path = tmp_path / "mm.tif"
    tifffile.imwrite(path, data, description=description, software="MetaSeries", metadata=None)
    image = read_image(path)
    assert image.metadata["format"] == "metamorph"
    assert image.channel_names == ("Phase",)
    assert image.pixel_size_um == pytest.approx({"X": 0.645, "Y": 0.645})
    np.testing.assert_array_equal(image.data[0, 0], data)


def test_minisblack_samples_are_read_as_channels(tmp_path: Path) -> None:
    data = ramp((10, 12, 2), "uint16")
    path = tmp_path / "two_samples.tif"
    tifffile.imwrite(path, data, photometric="minisblack", planarconfig="contig")
    image = read_image(path)
    assert image.shape == (2, 1, 10, 12)
    np.testing.assert_array_equal(image.channel(1)[0], data[:, :, 1])
    np.testing.assert_array_equal(read_image(path, channel=1).data[0, 0], data[:, :, 1])


def test_tifffile_shaped_tzcyx_stack_maps_to_canonical_axes(tmp_path: Path) -> None:
    data = ramp((2, 3, 2, 6, 7), "float32")
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX", "spacing": 2.0, "unit": "micron"},
                     resolution=(2.0, 2.0))
    image = read_image(path)
    assert image.axes == "TCZYX"
    assert image.pixel_size_um == pytest.approx({"X": 0.5, "Y": 0.5, "Z": 2.0})
    np.testing.assert_array_equal(image.data, data.transpose(0, 2, 1, 3, 4))


def test_16bit_png_keeps_its_full_range(tmp_path: Path) -> None:
    data = ramp((30, 40), "uint16")
    data[0, 0] = 65535
    path = tmp_path / "plane.png"
    path.write_bytes(imagecodecs.png_encode(data))
    image = read_image(path)
    assert image.dtype == np.uint16
    assert image.shape == (1, 1, 30, 40)
    np.testing.assert_array_equal(image.data[0, 0], data)


def test_8bit_png_reads_as_uint8(tmp_path: Path) -> None:
    data = ramp((9, 11), "uint8")
    path = tmp_path / "plane8.png"
    path.write_bytes(imagecodecs.png_encode(data))
    image = read_image(path, channel=0)
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image.data[0, 0], data)


def rgb_pixels() -> np.ndarray:
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 10
    return rgb


@pytest.mark.parametrize("kind", ["png", "tiff"])
def test_rgb_image_raises_unless_told_how_to_make_it_grey(tmp_path: Path, kind: str) -> None:
    rgb = rgb_pixels()
    path = tmp_path / f"rgb.{kind}"
    if kind == "png":
        path.write_bytes(imagecodecs.png_encode(rgb))
    else:
        tifffile.imwrite(path, rgb, photometric="rgb")
    with pytest.raises(RGBImageError) as caught:
        read_image(path)
    assert str(path) in str(caught.value) and "luminance" in str(caught.value)
    grey = read_image(path, rgb="luminance")
    assert grey.shape == (1, 1, 4, 5) and grey.dtype == np.uint8
    assert int(grey.data[0, 0, 0, 0]) == round(0.2125 * 200 + 0.7154 * 100 + 0.0721 * 10)
    green = read_image(path, rgb=1)
    assert np.all(green.data == 100)
    with pytest.raises(ChannelError):
        read_image(path, rgb=3)


def test_rgb_stack_takes_one_colour_per_plane(tmp_path: Path) -> None:
    stack = np.stack([rgb_pixels() + i for i in range(3)])  # Z Y X S
    path = tmp_path / "rgbstack.tif"
    tifffile.imwrite(path, stack, photometric="rgb")
    image = read_image(path, rgb=2)
    assert image.shape == (1, 3, 4, 5)
    np.testing.assert_array_equal(image.data[0, :, 0, 0], [10, 11, 12])
