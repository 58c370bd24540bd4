"""OME-Zarr in and out: files written by the ome-zarr library read back lazily, plate positions,
`predict --format ome-zarr` output opened with ome-zarr/zarr, and bad folders as one sentence."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

from labelfree_app.batch.plan import find_inputs
from labelfree_app.batch.verify import check_output
from labelfree_app.cli.main import main
from labelfree_app.errors import LabelFreeError
from labelfree_app.io import read_image
from labelfree_app.io.lazy import LazyArray
from labelfree_app.io.ome_zarr import OmeZarrError, read_ome_zarr_provenance
from tests.factories import make_unet_package

WINDOW = {"min": 0, "max": 65535, "start": 0, "end": 4000}


def _omero(*labels: str) -> dict:
    return {"channels": [{"label": label, "color": "FFFFFF", "window": WINDOW} for label in labels]}


def _write_czyx(path: Path, data: np.ndarray, labels: tuple[str, ...] = ("BF", "DAPI")) -> Path:
    group = zarr.open_group(str(path), mode="w")
    write_image(data, group, axes="czyx", scale_factors=[2],
                scale={"c": 1.0, "z": 2.0, "y": 0.5, "x": 250.0},
                axes_units={"z": "micrometer", "y": "micrometer", "x": "nanometer"}, omero=_omero(*labels))
    return path


@pytest.fixture
def pixels() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 4000, (2, 3, 96, 80), dtype=np.uint16)


def test_an_image_written_by_ome_zarr_reads_back_with_names_and_pixel_sizes(tmp_path, pixels):
    image = read_image(_write_czyx(tmp_path / "cells.ome.zarr", pixels))

    assert image.axes == "CZYX" and image.shape == (2, 3, 96, 80)
    assert image.channel_names == ("BF", "DAPI")
    assert image.pixel_size_um == pytest.approx({"Z": 2.0, "Y": 0.5, "X": 0.25})
    assert isinstance(image.data, LazyArray)  # nothing read yet
    assert np.array_equal(np.asarray(image.channel("DAPI")), pixels[1])


def test_ngff_04_on_zarr_v2_reads_back_the_same_without_importing_dask(tmp_path, pixels):
    import subprocess
    import sys

    from ome_zarr.format import FormatV04

    path = tmp_path / "old.ome.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    write_image(pixels, group, axes="czyx", scale_factors=[2], fmt=FormatV04(),
                scale={"c": 1.0, "z": 2.0, "y": 0.5, "x": 250.0},
                axes_units={"z": "micrometer", "y": "micrometer", "x": "nanometer"}, omero=_omero("BF", "DAPI"))
    assert (path / ".zattrs").is_file()  # Zarr v2 layout, NGFF 0.4 metadata
    image = read_image(path, channel="DAPI")
    assert image.channel_names == ("DAPI",) and image.pixel_size_um == pytest.approx({"Z": 2.0, "Y": 0.5, "X": 0.25})
    assert np.array_equal(np.asarray(image.data)[0], pixels[1])

    probe = ("import sys; from labelfree_app.io import read_image; import numpy as np; "
             f"np.asarray(read_image({str(path)!r}).data); print(sorted(m for m in sys.modules if m.startswith('dask')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # metadata from the group attributes, pixels through zarr: no dask


def test_a_time_series_keeps_its_time_axis(tmp_path):
    data = np.arange(2 * 1 * 32 * 48, dtype=np.float32).reshape(2, 1, 32, 48)  # t, c, y, x
    write_image(data, zarr.open_group(str(tmp_path / "t.ome.zarr"), mode="w"), axes="tcyx", scale_factors=[])

    image = read_image(tmp_path / "t.ome.zarr")

    assert image.axes == "TCZYX" and image.shape == (2, 1, 1, 32, 48)
    assert image.pixel_size_um == {}  # no units: no size is claimed
    assert np.array_equal(np.asarray(image.data)[:, :, 0], data)


def _plate(path: Path) -> Path:
    root = zarr.open_group(str(path), mode="w")
    write_plate_metadata(root, ["A", "B"], ["1"], ["A/1", "B/1"])
    for well, value in (("A/1", 100), ("B/1", 200)):
        group = root.require_group(well)
        write_well_metadata(group, [{"path": "0"}, {"path": "1"}])
        for field in ("0", "1"):
            data = np.full((1, 1, 32, 32), value + int(field), dtype=np.uint16)
            write_image(data, group.require_group(field), axes="czyx", scale_factors=[], omero=_omero("BF"))
    return path


def test_a_plate_needs_a_position_and_lists_them(tmp_path):
    plate = _plate(tmp_path / "plate.ome.zarr")

    with pytest.raises(OmeZarrError) as err:
        read_image(plate)
    assert "A/1/0, A/1/1, B/1/0, B/1/1" in str(err.value) and "--position" in str(err.value)

    image = read_image(plate, position="B/1/1")
    assert image.channel_names == ("BF",) and int(np.asarray(image.data).max()) == 201
    with pytest.raises(OmeZarrError, match="no position C/9/0"):
        read_image(plate, position="C/9/0")


def test_an_ome_zarr_folder_is_one_input_never_walked_into(tmp_path, pixels):
    _write_czyx(tmp_path / "in" / "sub" / "cells.ome.zarr", pixels)
    tifffile.imwrite(tmp_path / "in" / "plain.tif", pixels[0, 0])

    found = sorted(entry.key for entry in find_inputs([tmp_path / "in"]))
    assert found == ["plain.tif", "sub/cells.ome.zarr"]
    assert [e.path.name for e in find_inputs([tmp_path / "in" / "sub" / "cells.ome.zarr"])] == ["cells.ome.zarr"]


@pytest.mark.parametrize("damage, expected", [
    ("not_zarr", "not an OME-Zarr image"),
    ("no_multiscales", "not an OME-Zarr image"),
    ("missing_array", "missing"),
    ("damaged_chunk", "damaged or missing chunk"),
    ("no_datasets", "multiscales metadata is missing"),
    ("twice_the_same_axis", "cannot map to T, C, Z, Y, X"),
])
def test_bad_folders_are_one_sentence_naming_the_folder(tmp_path, pixels, damage, expected):
    path = tmp_path / "bad.ome.zarr"
    if damage == "not_zarr":
        path.mkdir()
        (path / "notes.txt").write_text("hello")
    elif damage == "no_multiscales":
        zarr.open_group(str(path), mode="w").attrs["something"] = 1
    else:
        _write_czyx(path, pixels)
        level = path / zarr.open_group(str(path), mode="r").attrs["ome"]["multiscales"][0]["datasets"][0]["path"]
        if damage == "missing_array":
            shutil.rmtree(level)
        elif damage in ("no_datasets", "twice_the_same_axis"):
            group = zarr.open_group(str(path), mode="r+")
            ome = dict(group.attrs["ome"])
            if damage == "no_datasets":
                ome["multiscales"] = [{**ome["multiscales"][0], "datasets": []}]
            else:
                ome["multiscales"] = [{**ome["multiscales"][0], "axes": [{"name": n} for n in "cyyx"]}]
            group.attrs["ome"] = ome
        else:
            chunks = [p for p in level.rglob("*") if p.is_file() and p.name != "zarr.json"]
            for chunk in chunks:
                chunk.write_bytes(b"garbage")

    with pytest.raises(LabelFreeError) as err:
        np.asarray(read_image(path).data)
    message = str(err.value)
    assert expected in message and str(path) in message and "Traceback" not in message


def test_predict_ome_zarr_in_and_out_equals_the_ome_tiff_output(tmp_path, pixels):
    package = make_unet_package(tmp_path / "models")
    source = _write_czyx(tmp_path / "cells.ome.zarr", pixels[:, :1])  # one plane, BF + DAPI
    before = sorted((p.relative_to(source), p.read_bytes()) for p in source.rglob("*") if p.is_file())
    common = ["--model", str(package.path), "--channel", "BF", "-q"]

    assert main(["predict", str(source), "-o", str(tmp_path / "zarr"), "--format", "ome-zarr", *common]) == 0
    assert main(["predict", str(source), "-o", str(tmp_path / "tif"), *common]) == 0

    out = tmp_path / "zarr" / "cells__test-unet.ome.zarr"
    nodes = list(Reader(parse_url(str(out)))())
    levels = nodes[0].data
    assert len(levels) >= 1 and levels[0].shape == (1, 1, 96, 80)
    attrs = dict(zarr.open_group(str(out), mode="r").attrs)
    assert attrs["ome"]["multiscales"][0]["datasets"][0]["path"] == "s0"
    assert attrs["ome"]["omero"]["channels"][0]["label"]
    provenance = read_ome_zarr_provenance(out)
    assert provenance["model"]["id"] == "test-unet" and provenance["inputs"][0]["path"] == str(source.resolve())
    expected = tifffile.imread(tmp_path / "tif" / "cells__test-unet.ome.tif")
    assert np.array_equal(np.asarray(levels[0]).squeeze(), expected.squeeze())
    assert check_output(out)[0] is not None  # a resumed batch skips it
    after = sorted((p.relative_to(source), p.read_bytes()) for p in source.rglob("*") if p.is_file())
    assert after == before  # the input is never modified
    assert not [p for p in (tmp_path / "zarr").iterdir() if p.name.startswith(".")]  # no temp left


def test_pyramid_levels_halve_and_a_cut_output_is_redone(tmp_path):
    from labelfree_app.io.ome_zarr import write_ome_zarr

    data = np.random.default_rng(1).random((1, 1, 1100, 600), dtype=np.float32)
    out = write_ome_zarr(tmp_path / "p.ome.zarr", data, "CZYX", pixel_size_um={"Y": 0.2, "X": 0.2},
                         provenance={"content": "prediction"})
    group = zarr.open_group(str(out), mode="r")
    shapes = [group[d["path"]].shape for d in group.attrs["ome"]["multiscales"][0]["datasets"]]
    assert shapes[:3] == [(1, 1, 1100, 600), (1, 1, 550, 300), (1, 1, 275, 150)]
    assert np.array_equal(group["s0"][:], data)
    assert np.allclose(group["s1"][0, 0, :2, :2], data[0, 0, :4, :4].reshape(2, 2, 2, 2).mean(axis=(1, 3)))

    (out / "zarr.json").unlink()
    assert check_output(out)[0] is None
