"""One prediction job for every door: `predict`, `batch` and the window's export write the same files."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from labelfree_app.cli.main import main
from labelfree_app.core.events import PredictionResult
from labelfree_app.errors import DiskFullError
from labelfree_app.io import read_image, read_provenance, write_image
from labelfree_app.models.registry import ModelRegistry
from tests.synthetic_cells import render_cells
from tests.factories import make_unet_package

PIXEL_SIZE = {"Y": 0.65, "X": 0.325}
TIMING = {"seconds", "written_at"}  # provenance fields that differ from run to run


@pytest.fixture()
def field_file(tmp_path: Path) -> Path:
    """A two-channel field whose file states its physical pixel sizes; a dotted name on purpose."""
    cells = render_cells((64, 80), seed=2)
    path = tmp_path / "in" / "field.v2.tif"
    path.parent.mkdir()
    write_image(path, np.stack([cells.brightfield, cells.nuclei])[:, None], "CZYX",
                channel_names=["Brightfield", "Hoechst"], pixel_size_um=PIXEL_SIZE)
    return path


@pytest.fixture()
def installed_unet(tmp_path: Path) -> str:
    package = make_unet_package(tmp_path / "packages")
    return ModelRegistry().install(package.path).id


def _gui_export(source: Path, model_id: str, folder: Path) -> list[Path]:
    """What the window does for Run → Export: read, run through the backend, export the result."""
    pytest.importorskip("PySide6")
    from labelfree_app.gui.backend import CoreBackend
    from labelfree_app.gui.predict.export import export_result

    backend = CoreBackend()
    image = backend.read_image(source)
    events = list(backend.run(image, model_id, {"device": "cpu", "seed": 0}))
    result = next(e for e in events if isinstance(e, PredictionResult))
    folder.mkdir()
    return export_result(folder, [source], result, backend, pixel_size_um=image.pixel_size_um)


def _ome_pixel_sizes(path: Path) -> dict[str, str]:
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata or ""
    return dict(re.findall(r'(PhysicalSize[XYZ](?:Unit)?)="([^"]+)"', xml))


def _without_timing(meta: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in meta.items() if key not in TIMING}


def test_predict_batch_and_gui_export_write_the_same_files(tmp_path, field_file, installed_unet, capsys):
    before = field_file.read_bytes()
    doors = {"predict": tmp_path / "predict", "batch": tmp_path / "batch", "gui": tmp_path / "gui"}
    assert main(["predict", str(field_file), "-o", str(doors["predict"]), "--model", installed_unet,
                 "--device", "cpu", "-q"]) == 0
    assert main(["batch", str(field_file), "-o", str(doors["batch"]), "--model", installed_unet,
                 "--device", "cpu", "-q"]) == 0
    gui_written = _gui_export(field_file, installed_unet, doors["gui"])

    names = {door: sorted(p.name for p in folder.glob("*.ome.tif")) for door, folder in doors.items()}
    assert names["predict"] == names["batch"] == names["gui"] == ["field.v2__test-unet.ome.tif"]
    assert [p.name for p in gui_written] == names["gui"]
    outputs = {door: folder / names[door][0] for door, folder in doors.items()}

    pixels = {door: tifffile.imread(path) for door, path in outputs.items()}
    assert pixels["predict"].dtype == np.float32
    assert pixels["predict"].tobytes() == pixels["batch"].tobytes() == pixels["gui"].tobytes()

    sizes = {door: _ome_pixel_sizes(path) for door, path in outputs.items()}
    assert float(sizes["predict"]["PhysicalSizeX"]) == pytest.approx(0.325)
    assert float(sizes["predict"]["PhysicalSizeY"]) == pytest.approx(0.65)
    assert sizes["predict"] == sizes["batch"] == sizes["gui"]
    assert read_image(outputs["gui"]).pixel_size_um == pytest.approx(PIXEL_SIZE)

    meta = {door: read_provenance(path) for door, path in outputs.items()}
    assert sorted(meta["predict"]) == sorted(meta["batch"]) == sorted(meta["gui"])
    for key in ("model", "settings", "inputs", "content", "device", "backend"):
        assert meta["predict"][key] == meta["batch"][key] == meta["gui"][key], key
    assert _without_timing(meta["predict"]) == _without_timing(meta["gui"])
    assert meta["gui"]["inputs"][0]["sha256"] and meta["gui"]["model"]["weights_sha256"]
    assert field_file.read_bytes() == before  # the input is never touched


def test_predict_runs_the_batch_jobs_free_space_check(tmp_path, field_file, installed_unet, monkeypatch, capsys):
    def full(folder: Any, nbytes: int, **_: Any) -> None:
        raise DiskFullError(f"There is not enough free space in {folder}; free some space.", path=folder)

    monkeypatch.setattr("labelfree_app.batch.process.ensure_free_space", full)
    out = tmp_path / "out"
    assert main(["predict", str(field_file), "-o", str(out), "--model", installed_unet, "-q"]) == 1
    assert "not enough free space" in capsys.readouterr().err
    assert not list(out.glob("*.ome.tif"))


def test_predict_removes_a_dead_writers_temp_file(tmp_path, field_file, installed_unet):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".field.v2__test-unet.ome.tif.0123abcd.part"
    stale.write_bytes(b"left by a killed run")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert main(["predict", str(field_file), "-o", str(out), "--model", installed_unet, "-q"]) == 0
    assert not stale.exists()
    assert (out / "field.v2__test-unet.ome.tif").is_file()


def test_predict_z_stack_is_one_job_named_after_the_first_plane(tmp_path, installed_unet, capsys):
    (tmp_path / "stack").mkdir()
    planes = [write_image(tmp_path / "stack" / f"p{z}.tif", render_cells((40, 48), seed=z).brightfield[None, None],
                          "CZYX", pixel_size_um=PIXEL_SIZE) for z in range(3)]
    out = tmp_path / "out"
    assert main(["predict", *map(str, planes), "--z-stack", "-o", str(out), "--model", installed_unet, "-q"]) == 0
    written = out / "p0__test-unet.ome.tif"
    assert capsys.readouterr().out.split() == [str(written)]
    assert read_image(written).data.shape[1] == 3
    assert [entry["path"] for entry in read_provenance(written)["inputs"]] == [str(p.resolve()) for p in planes]


def test_predict_without_a_model_runs_the_default_for_each_input(tmp_path, field_file, installed_unet, capsys):
    out = tmp_path / "out"
    assert main(["predict", str(field_file), "-o", str(out), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    chosen = re.search(r"model: (\S+) \(the default for a single plane\)", captured.err)
    assert chosen is not None
    written = out / f"field.v2__{chosen.group(1)}.ome.tif"
    assert str(written) in captured.out.split()
    assert read_provenance(written)["model"]["id"] == chosen.group(1)


def test_the_windows_run_on_a_huge_image_and_its_export_write_the_file_predict_writes(
        tmp_path, field_file, installed_unet, monkeypatch, capsys):
    """A plane the window calls huge is streamed by the same job into the cache; Export copies that file."""
    pytest.importorskip("PySide6")
    from labelfree_app.batch import process
    from labelfree_app.gui.backend import CoreBackend
    from labelfree_app.gui.predict.export import export_result
    from labelfree_app.gui.streamed_run import SavedResult
    from labelfree_app.io import regions

    monkeypatch.setattr(process, "STREAM_MIN_PIXELS", 1000)  # this small field streams, as a huge one does
    monkeypatch.setattr(regions, "LAZY_MIN_BYTES", 0)
    backend = CoreBackend(large_plane_pixels=1000)
    assert main(["predict", str(field_file), "-o", str(tmp_path / "predict"), "--model", installed_unet,
                 "--device", "cpu", "-q"]) == 0
    image = backend.read_image(field_file)
    assert not isinstance(image.data, np.ndarray)  # lazy: the window shows it as an overview
    saved = list(backend.predict_to_file(image, installed_unet, {"device": "cpu", "seed": 0}, [field_file]))[-1]
    assert isinstance(saved, SavedResult)
    folder = tmp_path / "gui"
    folder.mkdir()
    written = export_result(folder, [field_file], saved, backend, pixel_size_um=image.pixel_size_um)
    predicted = tmp_path / "predict" / "field.v2__test-unet.ome.tif"
    assert [p.name for p in written] == [predicted.name]

    with tifffile.TiffFile(written[0]) as gui, tifffile.TiffFile(predicted) as cli:
        assert gui.pages[0].is_tiled and cli.pages[0].is_tiled  # both streamed
        assert gui.asarray().tobytes() == cli.asarray().tobytes()
    assert _ome_pixel_sizes(written[0]) == _ome_pixel_sizes(predicted)
    assert _without_timing(read_provenance(written[0])) == _without_timing(read_provenance(predicted))
    assert written[0].read_bytes() == saved.prediction.read_bytes()  # copied, not written again
