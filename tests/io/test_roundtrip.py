"""Write then read: every dtype and axes combination, in OME-TIFF and ImageJ TIFF."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
import tifffile

from labelfree_app import __version__
from labelfree_app.io import Image, read_image, read_provenance, write_image
from tests.io.synthetic import ramp

SIZES = {"T": 2, "C": 3, "Z": 4, "Y": 5, "X": 7}
AXES = ["YX", "ZYX", "CYX", "CZYX", "TCZYX"]
DTYPES = ["uint8", "uint16", "int16", "float32"]


def expected_canonical(data: np.ndarray, axes: str) -> np.ndarray:
    """Reference reorder written out by hand: missing axes become size 1, T dropped when absent."""
    full_axes = "TCZYX" if "T" in axes else "CZYX"
    out = data
    for axis in full_axes:
        if axis not in axes:
            out = out[np.newaxis]
            axes = axis + axes
    return np.transpose(out, [axes.index(axis) for axis in full_axes])


@pytest.mark.parametrize("imagej", [False, True], ids=["ome", "imagej"])
@pytest.mark.parametrize("axes", AXES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_write_then_read_returns_the_same_pixels_axes_and_dtype(
    tmp_path: Path, dtype: str, axes: str, imagej: bool
) -> None:
    data = ramp(tuple(SIZES[a] for a in axes), dtype)
    path = write_image(tmp_path / "out.tif", data, axes, imagej=imagej)
    image = read_image(path)
    expected = expected_canonical(data, axes)
    assert image.axes == ("TCZYX" if "T" in axes else "CZYX")
    assert image.shape == expected.shape
    assert image.dtype == np.dtype(dtype)
    assert image.metadata["format"] == ("imagej" if imagej else "ome")
    np.testing.assert_array_equal(image.data, expected)


@pytest.mark.parametrize("imagej", [False, True], ids=["ome", "imagej"])
def test_channel_names_pixel_sizes_and_provenance_survive_a_round_trip(tmp_path: Path, imagej: bool) -> None:
    data = ramp((2, 3, 2, 8, 9), "float32")
    provenance = {"model_id": "fnet-dna", "model_version": "1.2.0", "sampling": {"steps": 50, "samples": 8}}
    path = write_image(
        tmp_path / "pred.tif",
        data,
        "TZCYX",
        channel_names=["DNA mean", "DNA variance"],
        pixel_size_um={"Z": 0.29, "Y": 0.108, "X": 0.108},
        provenance=provenance,
        imagej=imagej,
    )
    image = read_image(path)
    assert image.shape == (2, 2, 3, 8, 9)
    assert image.channel_names == ("DNA mean", "DNA variance")
    assert image.pixel_size_um == pytest.approx({"Z": 0.29, "Y": 0.108, "X": 0.108}, rel=1e-5)
    np.testing.assert_array_equal(image.channel("DNA variance"), data[:, :, 1])
    stored = read_provenance(path)
    assert stored["model_id"] == "fnet-dna"
    assert stored["sampling"] == {"steps": 50, "samples": 8}
    assert stored["app"] == "LabelFree" and stored["app_version"] == __version__
    assert "written_at" in stored


def test_ome_output_is_valid_ome_xml_with_physical_sizes(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.ome.tif", ramp((2, 6, 6), "uint16"), "CYX",
                       channel_names=["BF", "GFP"], pixel_size_um={"X": 0.5, "Y": 0.5})
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
        assert tif.is_ome
    root = ElementTree.fromstring(xml)  # well-formed XML
    pixels = next(el for el in root.iter() if el.tag.endswith("Pixels"))
    assert pixels.attrib["PhysicalSizeX"] == "0.5" and pixels.attrib["PhysicalSizeXUnit"] == "µm"
    assert [el.attrib["Name"] for el in pixels if el.tag.endswith("Channel")] == ["BF", "GFP"]


def test_provenance_of_a_file_without_one_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, ramp((6, 6), "uint8"))
    assert read_provenance(path) == {}


def test_imagej_output_of_float64_is_stored_as_float32(tmp_path: Path) -> None:
    data = ramp((3, 4, 5), "float64")
    image = read_image(write_image(tmp_path / "ij.tif", data, "ZYX", imagej=True))
    assert image.dtype == np.float32
    np.testing.assert_allclose(image.data[0], data)


def test_reading_one_channel_of_each_written_layout_matches_the_full_read(tmp_path: Path) -> None:
    data = ramp((2, 3, 4, 5, 6), "uint16")  # T C Z Y X
    for imagej in (False, True):
        path = write_image(tmp_path / f"tc{imagej}.tif", data, "TCZYX", imagej=imagej,
                           channel_names=["a", "BF", "c"])
        full = read_image(path)
        picked = read_image(path, channel="bf")
        assert picked.shape == (2, 1, 4, 5, 6)
        assert picked.channel_names == ("BF",)
        np.testing.assert_array_equal(picked.data[:, 0], full.data[:, 1])


def test_image_from_array_reorders_axes_and_names_channels() -> None:
    data = ramp((5, 7, 2), "uint8")
    image = Image.from_array(data, "YXC")
    assert image.shape == (2, 1, 5, 7)
    assert image.channel_names == ("C0", "C1")
    np.testing.assert_array_equal(image.channel(1)[0], data[:, :, 1])
    assert image.shape_zyx == (1, 5, 7) and image.n_channels == 2


def test_write_rejects_axes_that_do_not_match_the_array(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_image(tmp_path / "x.tif", np.zeros((3, 4)), "ZYX")
    with pytest.raises(ValueError):
        write_image(tmp_path / "x.tif", np.zeros((3, 4)), "ZX")
    with pytest.raises(ValueError):
        write_image(tmp_path / "x.tif", np.zeros((2, 3, 4)), "CYX", channel_names=["only one"])
    assert list(tmp_path.iterdir()) == []


def test_large_ome_output_switches_to_bigtiff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labelfree_app.io import writing

    monkeypatch.setattr(writing, "BIGTIFF_THRESHOLD_BYTES", 1000)
    data = ramp((2, 20, 30), "uint16")
    image = read_image(write_image(tmp_path / "big.ome.tif", data, "CYX"))
    assert image.metadata["bigtiff"] is True
    np.testing.assert_array_equal(image.data[:, 0], data)


@pytest.mark.parametrize("compression", ["zlib", "lzw", "zstd"])
def test_compressed_output_reads_back_identically(tmp_path: Path, compression: str) -> None:
    data = ramp((3, 16, 16), "float32")
    path = write_image(tmp_path / "c.ome.tif", data, "ZYX", compression=compression)
    image = read_image(path)
    assert image.metadata["compression"] in ("adobe_deflate", "lzw", "zstd")
    np.testing.assert_array_equal(image.data[0], data)
