"""The newer doors, hostile or damaged (issue 29, items 1-7): OME-Zarr paths and chunks, the batch's resume
check on OME-Zarr outputs, bioimage.io packages that reach outside or blow up, and interrupted training.

Each refusal goes through the CLI's ``main`` in-process (fast; the guard is the same one a user meets) and
asserts the exit code, exactly one ``error:`` sentence, no traceback, inputs byte-identical and nothing left
behind. The corpus's helpers (``digest``, ``field_image``, the tiny model) are reused from
``tests/test_bad_input_corpus.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from labelfree_app.cli.main import main
from tests.test_bad_input_corpus import digest, field_image, model_path  # noqa: F401 - model_path is a fixture


def _tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def refused(args: list[str], work: Path, capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """Run ``labelfree args`` in ``work``; assert one sentence holding ``words``, inputs untouched, no leftovers."""
    before, files = digest(work), _tree(work)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        code = main(args)
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1, err
    assert "Traceback" not in err and len(errors) == 1, err
    for word in words:
        assert word in errors[0], errors[0]
    assert digest(work) == before  # inputs byte-identical
    left = {p for p in _tree(work) - files if not (p == "out" and not any((work / "out").iterdir()))}
    assert not left, left  # nothing written (an empty output folder at most)
    return errors[0]


def ngff(path: Path, data: np.ndarray, *, zarr_format: int = 3, chunks: tuple[int, ...] | None = None,
         dataset_paths: tuple[str, ...] = ("s0", "s1"), fill_value: object = 0) -> Path:
    """A small NGFF multiscale image (axes c, y, x; level s1 the 2×2 mean of s0) written with zarr alone."""
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    levels = [data, data.reshape(data.shape[0], data.shape[1] // 2, 2, data.shape[2] // 2, 2).mean(axis=(2, 4))
              .astype(data.dtype) if data.dtype.kind in "uif" else data[:, ::2, ::2]]
    for name, level in zip(("s0", "s1"), levels):
        array = group.create_array(name, shape=level.shape, dtype=level.dtype, fill_value=fill_value,
                                   chunks=chunks or level.shape)
        array[...] = level
    multiscales = [{"version": "0.4" if zarr_format == 2 else "0.5", "name": path.name,
                    "axes": [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"},
                             {"name": "x", "type": "space"}],
                    "datasets": [{"path": p, "coordinateTransformations": [{"type": "scale", "scale": [1, 2 ** i, 2 ** i]}]}
                                 for i, p in enumerate(dataset_paths)]}]
    if zarr_format == 2:
        group.attrs["multiscales"] = multiscales
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": multiscales}
    return path


def _predict(source: str, model: str) -> list[str]:
    return ["predict", source, "-o", "out", "-q", "--model", model]


# --- 1. NGFF paths stay inside the store --------------------------------------------------------------
@pytest.mark.parametrize("where", ["../secret.ome.zarr/s0", "absolute"])
def test_a_dataset_path_outside_the_store_is_refused(where: str, tmp_path: Path, model_path: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    secret = ngff(tmp_path / "secret.ome.zarr", field_image(1)[None].astype(np.float32))
    work = tmp_path / "work"
    work.mkdir()
    target = str(secret / "s0") if where == "absolute" else "../../secret.ome.zarr/s0"
    ngff(work / "in.ome.zarr", field_image(2)[None].astype(np.float32), dataset_paths=(target,))
    refused(_predict("in.ome.zarr", model_path), work, capsys, "in.ome.zarr", target, "outside its own folder")


def test_a_plate_well_image_outside_the_store_is_refused(tmp_path: Path, model_path: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    ngff(work / "outside.ome.zarr", field_image(1)[None].astype(np.float32))  # the plate's neighbour
    plate = zarr.open_group(str(work / "plate.ome.zarr"), mode="w")
    plate.attrs["ome"] = {"version": "0.5", "plate": {"rows": [{"name": "A"}], "columns": [{"name": "1"}],
                                                      "wells": [{"path": "A/1", "rowIndex": 0, "columnIndex": 0}]}}
    well = plate.require_group("A").require_group("1")
    well.attrs["ome"] = {"version": "0.5", "well": {"images": [{"path": "../../../outside.ome.zarr"}]}}
    refused(_predict("plate.ome.zarr", model_path) + ["--position", "A/1/../../../outside.ome.zarr"], work, capsys,
            "plate.ome.zarr", "outside.ome.zarr", "outside its own folder")


# --- 4. a missing chunk is damage, unless the lower level shows it is empty ---------------------------
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_missing_chunk_is_refused_not_read_as_zeros(zarr_format: int, tmp_path: Path, model_path: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    store = ngff(tmp_path / "in.ome.zarr", field_image(3)[None].astype(np.float32), zarr_format=zarr_format,
                 chunks=(1, 32, 32))
    chunk = store / "s0" / ("0.1.0" if zarr_format == 2 else "c/0/1/0")
    chunk.unlink()
    refused(_predict("in.ome.zarr", model_path), tmp_path, capsys, "in.ome.zarr", "missing chunk (0, 1, 0)")


def test_a_chunk_left_out_because_it_is_empty_still_reads(tmp_path: Path) -> None:
    from labelfree_app.io import read_image

    pixels = field_image(4)[None].astype(np.float32)
    pixels[:, 32:, :32] = 0  # one whole chunk of fill value: zarr does not store it, nor its s1 chunk
    store = ngff(tmp_path / "in.ome.zarr", pixels, chunks=(1, 32, 32))
    assert not (store / "s0" / "c" / "0" / "1" / "0").exists()
    assert np.array_equal(np.asarray(read_image(store).data)[:, 0], pixels)


def test_a_missing_chunk_without_a_lower_level_to_vouch_for_it_is_refused(tmp_path: Path) -> None:
    from labelfree_app.io import read_image
    from labelfree_app.io.ome_zarr import OmeZarrError

    pixels = field_image(4)[None].astype(np.float32)
    pixels[:, 32:, :32] = 0
    store = ngff(tmp_path / "in.ome.zarr", pixels, chunks=(1, 32, 32), dataset_paths=("s0",))
    with pytest.raises(OmeZarrError, match=r"missing chunk \(0, 1, 0\)"):
        read_image(store)


# --- 6. the same pixel-type rule as TIFF ------------------------------------------------------------
@pytest.mark.parametrize("dtype, says", [(np.bool_, "1-bit (boolean)"), (np.complex64, "complex")])
def test_bool_and_complex_ome_zarr_are_refused_as_tiff_is(dtype: type, says: str, tmp_path: Path,
                                                          model_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    ngff(tmp_path / "odd.ome.zarr", (field_image(5)[None] > 500).astype(dtype), fill_value=False if dtype is np.bool_
         else 0)
    refused(_predict("odd.ome.zarr", model_path), tmp_path, capsys, "odd.ome.zarr", says, "cannot use")


# --- 5. the resume check verifies OME-Zarr outputs --------------------------------------------------
@pytest.mark.parametrize("damage", ["deleted", "truncated", "truncated-no-report"])
def test_a_damaged_ome_zarr_output_is_redone_on_resume(damage: str, tmp_path: Path, model_path: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "a.tif", field_image(6))
    args = ["batch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", model_path, "--format", "ome-zarr",
            "--device", "cpu"]
    assert main(args) == 0
    output = tmp_path / "out" / "a__test-unet.ome.zarr"
    chunk = output / "s0" / "c" / "0" / "0" / "0" / "0"
    good = np.asarray(zarr.open_array(str(output / "s0"), mode="r")[...])
    if damage == "deleted":
        chunk.unlink()
    else:
        chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    if damage == "truncated-no-report":
        for report in (tmp_path / "out").glob("*.json"):
            report.unlink()
    capsys.readouterr()
    assert main(args) == 0
    rows = json.loads(next((tmp_path / "out").glob("*.json")).read_text())["rows"]
    assert [row["status"] for row in rows] == ["done"], rows  # redone, not skipped
    assert np.array_equal(np.asarray(zarr.open_array(str(output / "s0"), mode="r")[...]), good)


# --- 2. a bioimage.io package uses only its own files --------------------------------------------------
def _rdf(weights_source: str) -> str:
    return ("type: model\nformat_version: 0.5.4\nname: hostile\n"
            f"weights:\n  onnx:\n    source: {weights_source}\n    opset_version: 17\n")


def _import(source: str) -> list[str]:
    return ["models", "import-bioimageio", source, "--out", "out"]


@pytest.mark.parametrize("packaging", ["zip-absolute", "folder-parent"])
def test_a_bioimageio_file_entry_outside_the_package_is_refused(packaging: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secret.onnx"
    secret.write_bytes(b"not for this package")
    work = tmp_path / "work"
    work.mkdir()
    if packaging == "zip-absolute":
        with zipfile.ZipFile(work / "model.zip", "w") as archive:
            archive.writestr("rdf.yaml", _rdf(str(secret)))
        source, named = "model.zip", str(secret)
    else:
        (work / "model").mkdir()
        (work / "model" / "rdf.yaml").write_text(_rdf("../../secret.onnx"))
        source, named = "model", "../../secret.onnx"
    refused(_import(source), work, capsys, source, named, "outside the package")


def test_a_bioimageio_zip_member_that_climbs_out_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with zipfile.ZipFile(tmp_path / "model.zip", "w") as archive:
        archive.writestr("rdf.yaml", _rdf("weights.onnx"))
        archive.writestr("../../escaped.onnx", b"x")
    refused(_import("model.zip"), tmp_path, capsys, "model.zip", "../../escaped.onnx", "outside the package")


# --- 3. bounded parsing and unpacking ----------------------------------------------------------------
def test_a_billion_laughs_rdf_is_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join(['*a' + str(i - 1)] * 10)}]" for i in range(1, 10)]
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "rdf.yaml").write_text("type: model\n" + "\n".join(lines) + "\nname: *a9\n")
    refused(_import("model"), tmp_path, capsys, "model", "YAML aliases", "100000 values")


def test_a_zip_bomb_is_refused_before_it_is_unpacked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with zipfile.ZipFile(tmp_path / "model.zip", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("rdf.yaml", _rdf("weights.onnx"))
        archive.writestr("weights.onnx", bytes(32 << 20))  # 32 MB of zeros stored in ~32 KB
    assert (tmp_path / "model.zip").stat().st_size < 1 << 20
    refused(_import("model.zip"), tmp_path, capsys, "model.zip", "weights.onnx", "zip bomb")


def test_a_package_larger_than_the_bound_is_refused_and_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from labelfree_app.models import bioimageio_guard

    monkeypatch.setattr(bioimageio_guard, "MAX_PACKAGE_BYTES", 1 << 20)  # stands for the real 512 MB
    with zipfile.ZipFile(tmp_path / "model.zip", "w") as archive:
        archive.writestr("rdf.yaml", _rdf("weights.onnx"))
        archive.writestr("weights.onnx", os.urandom(2 << 20))
    refused(_import("model.zip"), tmp_path, capsys, "model.zip", "unpacks to 2 MB", "reads its weights whole")


# --- 7. an interrupted training run can be resumed; nothing replaces a finished model ------------------
def _train_args(folder: Path, *extra: str) -> list[str]:
    return ["train", "--input", str(folder / "bf.tif"), "--target", str(folder / "dna.tif"), "--out",
            str(folder / "model"), "--max-steps", "5", "--patch", "32", "32", "--batch-size", "2", "--depth", "2",
            "--base-channels", "4", "--val-every", "1000", "--checkpoint-every", "100", "--device", "cpu",
            "--augment", "none", *extra]


@pytest.fixture
def pair(tmp_path: Path) -> Path:
    bright = field_image(7)
    tifffile.imwrite(tmp_path / "bf.tif", bright)
    tifffile.imwrite(tmp_path / "dna.tif", (bright * 0.5 + field_image(8) * 0.1).astype(np.float32))
    return tmp_path


def test_sigterm_during_training_leaves_a_checkpoint_that_resume_continues(
        pair: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import signal

    from labelfree_app.cli.exit_codes import EXIT_INTERRUPTED
    from labelfree_app.training import loop

    real_step, steps = loop._train_step, []

    def step(*args: object, **kwargs: object) -> float:
        steps.append(1)
        if len(steps) == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of step 3, as a scheduler's kill does
        return real_step(*args, **kwargs)

    def as_interrupt(signum: int, frame: object) -> None:  # without the command's own handler: no pytest death
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_train_step", step)
    previous = signal.signal(signal.SIGTERM, as_interrupt)
    try:
        assert main(_train_args(pair)) == EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "checkpoint of step 3" in err, err
    assert [p.name for p in (pair / "model.training" / "checkpoints").iterdir()] == ["step-00000003"]
    assert not (pair / "model").exists()  # no package from an interrupted run

    steps.clear()
    assert main(_train_args(pair, "--resume")) == 0
    assert len(steps) == 2  # steps 4 and 5 only: it went on from the checkpoint
    assert json.loads((pair / "model" / "manifest.json").read_text())["training"]["steps"] == 5


def test_resume_with_nothing_to_resume_is_one_sentence(pair: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused(_train_args(pair, "--resume"), pair, capsys, "no checkpoint to resume", "model.training",
            "leave out --resume")


def test_resume_never_replaces_a_finished_model_without_overwrite(pair: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_train_args(pair)) == 0
    capsys.readouterr()
    refused(_train_args(pair, "--resume", "--max-steps", "7"), pair, capsys, "already holds a finished model",
            "--overwrite")
