"""Reading the real files in ../shared/data: shapes, dtypes, axes, names and pixel values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from labelfree_app.io import find_transmitted_channel, read_image, read_plane_series, write_image

PIL = pytest.importorskip("PIL.Image")

IXM = "IXMtest_A02_s9.tif"
OME_BF = "s_1_t_1_c_1_z_1.ome.tiff"
CELLPROFILER = [f"AS_09125_050116030001_D03f00d{i}.tif" for i in range(3)]


def pil_pages(path: Path) -> list[np.ndarray]:
    """Every page read by Pillow, an independent reader, in native byte order."""
    pages = []
    with PIL.open(path) as handle:
        for index in range(getattr(handle, "n_frames", 1)):
            handle.seek(index)
            page = np.array(handle)
            pages.append(page.astype(page.dtype.newbyteorder("=")))
    return pages


def test_every_io_sample_reads_as_czyx_with_the_same_pixels_as_pillow(io_samples: Path) -> None:
    files = sorted(io_samples.iterdir())
    assert len(files) == 6
    for path in files:
        image = read_image(path)
        assert image.axes == "CZYX"
        assert image.data.ndim == 4
        expected = np.stack(pil_pages(path))
        assert image.shape == (expected.shape[0], 1, *expected.shape[1:]), path.name
        assert image.dtype == expected.dtype, path.name
        np.testing.assert_array_equal(image.data[:, 0], expected, err_msg=path.name)


def test_big_endian_imagej_hyperstack_gives_three_named_channels_and_known_values(io_samples: Path) -> None:
    image = read_image(io_samples / IXM)
    assert image.shape == (3, 1, 395, 695)
    assert image.dtype == np.uint16 and image.dtype.isnative
    assert image.metadata["format"] == "imagej"
    assert image.metadata["byteorder"] == "big"
    assert image.metadata["source_axes"] == "CYX"
    assert image.channel_names == ("IXMtest_A02_s9_c1.tif", "IXMtest_A02_s9_c2.tif", "IXMtest_A02_s9_c3.tif")
    # Values checked with both tifffile and Pillow.
    assert [int(image.data[c, 0, 100, 200]) for c in range(3)] == [697, 589, 692]
    assert image.data[1, 0, 0, :3].tolist() == [196, 208, 192]
    assert int(image.data[2].max()) == 4095


def test_big_endian_file_gives_the_same_numbers_as_a_little_endian_copy(io_samples: Path, tmp_path: Path) -> None:
    big = read_image(io_samples / IXM)
    little_path = tmp_path / "little.tif"
    tifffile.imwrite(little_path, tifffile.imread(io_samples / IXM), imagej=True, byteorder="<",
                     metadata={"axes": "CYX"})
    little = read_image(little_path)
    assert little.metadata["byteorder"] == "little"
    np.testing.assert_array_equal(big.data, little.data)


def test_one_channel_of_the_imagej_sample_matches_the_full_read(io_samples: Path) -> None:
    full = read_image(io_samples / IXM)
    picked = read_image(io_samples / IXM, channel="IXMtest_A02_s9_c3.tif")
    assert picked.shape == (1, 1, 395, 695)
    assert picked.channel_names == ("IXMtest_A02_s9_c3.tif",)
    assert picked.metadata["source_channel_index"] == 2
    np.testing.assert_array_equal(picked.data[0], full.data[2])
    np.testing.assert_array_equal(read_image(io_samples / IXM, channel=1).data[0], full.data[1])


def test_bioformats_ome_tiff_gives_channel_name_pixel_size_and_transmitted_channel(io_samples: Path) -> None:
    image = read_image(io_samples / OME_BF)
    assert image.shape == (1, 1, 325, 475)
    assert image.dtype == np.uint16
    assert image.metadata["format"] == "ome"
    assert image.metadata["compression"] == "lzw"
    assert image.channel_names == ("Bright",)
    assert image.pixel_size_um == pytest.approx({"X": 1.0833333333, "Y": 1.0833333333})
    assert image.metadata["channel_info"][0]["IlluminationType"] == "Transmitted"
    assert int(image.data[0, 0, 100, 200]) == 3787
    assert int(image.data.sum(dtype=np.int64)) == 563709458
    assert find_transmitted_channel(image) == 0
    assert image.channel_index("bright") == 0


def test_cellprofiler_packbits_uint8_files_read_with_known_values(io_samples: Path) -> None:
    sums = []
    for name in CELLPROFILER:
        image = read_image(io_samples / name)
        assert image.shape == (1, 1, 512, 512)
        assert image.dtype == np.uint8
        assert image.channel_names == ("C0",)
        assert image.pixel_size_um == {}  # 72 dpi print resolution is not a pixel size
        sums.append(int(image.data.sum(dtype=np.int64)))
    assert read_image(io_samples / CELLPROFILER[0]).metadata["compression"] == "packbits"
    assert sums == [4533639, 2766334, 7433905]


def test_stardist_uint16_image_reads_with_known_values(io_samples: Path) -> None:
    image = read_image(io_samples / "img2d.tif")
    assert image.shape == (1, 1, 512, 512)
    assert image.dtype == np.uint16
    assert int(image.data[0, 0, 100, 200]) == 26
    assert int(image.data.sum(dtype=np.int64)) == 8331268


def test_isl_phase_contrast_planes_stack_in_natural_z_order(isl_dir: Path) -> None:
    stack = read_plane_series(isl_dir / "z_depth-*_PHASE_CONTRAST.png")
    assert stack.shape == (1, 13, 1024, 1024)
    assert stack.dtype == np.uint16
    assert stack.axes == "CZYX"
    assert stack.channel_names == ("PHASE_CONTRAST",)
    names = [Path(p).name for p in stack.metadata["plane_paths"]]
    assert names == [f"z_depth-{z}_PHASE_CONTRAST.png" for z in range(13)]
    # Values checked with imageio and Pillow.
    assert int(stack.data[0, 0, 512, 512]) == 37284
    assert int(stack.data[0, 12, 512, 512]) == 35900
    for z in (0, 2, 10, 12):
        with PIL.open(isl_dir / f"z_depth-{z}_PHASE_CONTRAST.png") as plane:
            np.testing.assert_array_equal(stack.data[0, z], np.array(plane))


def test_isl_16bit_png_target_keeps_16_bits(isl_dir: Path) -> None:
    image = read_image(isl_dir / "depth_computation-MAXPROJECT_DAPI_CONFOCAL.png")
    assert image.shape == (1, 1, 1024, 1024)
    assert image.dtype == np.uint16
    assert image.metadata["format"] == "png"
    assert int(image.data.max()) == 65535
    assert int(image.data[0, 0, 512, 512]) == 15519


def test_real_sample_survives_an_ome_round_trip(io_samples: Path, tmp_path: Path) -> None:
    image = read_image(io_samples / IXM)
    out = write_image(tmp_path / "copy.ome.tif", image.data, image.axes, channel_names=image.channel_names,
                      protected_paths=[io_samples / IXM])
    again = read_image(out)
    assert again.channel_names == image.channel_names
    np.testing.assert_array_equal(again.data, image.data)
