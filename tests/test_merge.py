"""Several stains in one file: `predict -m A -m B --merge` and `batch --merge` write one multi-channel
OME-TIFF whose channels are the targets and whose pixels are the single predictions'."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from labelfree_app.cli.main import main
from labelfree_app.io import read_image, read_provenance, write_image
from labelfree_app.models.registry import ModelRegistry
from tests.factories import make_unet_package
from tests.synthetic_cells import render_cells

PIXEL_SIZE = {"Y": 0.5, "X": 0.5}


@pytest.fixture()
def field_file(tmp_path: Path) -> Path:
    cells = render_cells((64, 80), seed=3)
    path = tmp_path / "in" / "field.tif"
    path.parent.mkdir()
    write_image(path, cells.brightfield[None, None], "CZYX", channel_names=["Brightfield"], pixel_size_um=PIXEL_SIZE)
    return path


@pytest.fixture()
def two_models(tmp_path: Path) -> tuple[str, str]:
    """Two tiny U-Nets with different weights and targets ("DNA", "Tubulin")."""
    registry = ModelRegistry()
    a = make_unet_package(tmp_path / "packages", model_id="stain-a", seed=1)
    b = make_unet_package(tmp_path / "packages", model_id="stain-b", seed=2, target="Tubulin")
    return registry.install(a.path).id, registry.install(b.path).id


def _pixels(path: Path) -> np.ndarray:
    return tifffile.imread(path)


def _channel_names(path: Path) -> list[str]:
    return list(read_image(path).channel_names)


def test_predict_merge_writes_one_file_with_targets_as_channels_and_the_single_pixels(
        field_file: Path, two_models: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_models
    merged_dir, single_dir = tmp_path / "merged", tmp_path / "single"
    assert main(["predict", str(field_file), "-o", str(merged_dir), "-m", a, "-m", b, "--merge",
                 "--device", "cpu", "-q"]) == 0
    written = sorted(p.name for p in merged_dir.iterdir() if not p.name.startswith("."))
    assert written == [f"field__{a}+{b}.ome.tif"]
    merged = merged_dir / written[0]
    assert str(merged) in capsys.readouterr().out
    assert _channel_names(merged) == ["DNA", "Tubulin"]
    for model in (a, b):
        assert main(["predict", str(field_file), "-o", str(single_dir), "-m", model, "--device", "cpu", "-q"]) == 0
    stack = np.squeeze(_pixels(merged))
    single_a = np.squeeze(_pixels(single_dir / f"field__{a}.ome.tif"))
    single_b = np.squeeze(_pixels(single_dir / f"field__{b}.ome.tif"))
    assert not np.array_equal(single_a, single_b)  # two different stains, or the test proves nothing
    np.testing.assert_array_equal(stack[0], single_a)
    np.testing.assert_array_equal(stack[1], single_b)
    assert read_image(merged).pixel_size_um == read_image(single_dir / f"field__{a}.ome.tif").pixel_size_um
    meta = read_provenance(merged)
    assert [c["model"]["id"] for c in meta["channels"]] == [a, b]
    assert [c["name"] for c in meta["channels"]] == ["DNA", "Tubulin"]
    assert all("trust" in c for c in meta["channels"])


def test_predict_refuses_two_models_without_merge(field_file: Path, two_models: tuple[str, str],
                                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_models
    assert main(["predict", str(field_file), "-o", str(tmp_path / "out"), "-m", a, "-m", b, "-q"]) != 0
    assert "--merge" in capsys.readouterr().err


def test_batch_merge_one_row_per_input_and_resume_skips(field_file: Path, two_models: tuple[str, str],
                                                        tmp_path: Path) -> None:
    a, b = two_models
    second = field_file.with_name("other.tif")
    second.write_bytes(field_file.read_bytes())
    out = tmp_path / "batch"
    args = ["batch", str(field_file.parent), "-o", str(out), "-m", a, "-m", b, "--merge", "--device", "cpu", "-q"]
    assert main(args) == 0
    rows = json.loads((out / "batch_report.json").read_text())["rows"]
    assert [(Path(r["input"]).name, r["model"], r["status"]) for r in rows] == [
        ("field.tif", f"{a}+{b}", "done"), ("other.tif", f"{a}+{b}", "done")]
    assert sorted(p.name for p in out.glob("*.ome.tif")) == [f"field__{a}+{b}.ome.tif", f"other__{a}+{b}.ome.tif"]
    first_bytes = (out / f"field__{a}+{b}.ome.tif").read_bytes()
    assert main(args) == 0
    rows = json.loads((out / "batch_report.json").read_text())["rows"]
    assert {r["status"] for r in rows} == {"skipped"}
    assert (out / f"field__{a}+{b}.ome.tif").read_bytes() == first_bytes
    (out / f"other__{a}+{b}.ome.tif").write_bytes(first_bytes[: len(first_bytes) // 2])  # a cut file is redone
    assert main(args) == 0
    rows = json.loads((out / "batch_report.json").read_text())["rows"]
    assert [r["status"] for r in rows] == ["skipped", "done"]


def test_merge_needs_two_models(field_file: Path, two_models: tuple[str, str], tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(field_file), "-o", str(tmp_path / "o"), "-m", two_models[0], "--merge", "-q"]) != 0
    assert "two or more" in capsys.readouterr().err
