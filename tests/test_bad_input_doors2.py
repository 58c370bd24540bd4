"""The newer doors, hostile or damaged (issue 29, items 8-16): merged shard reports, SIGTERM while an OME-Zarr
is being made, malformed NGFF metadata, an empty frame of a time series, outputs inside an input store or over
a folder of the user's, bioimage.io integrity, training's data, settings and checkpoints, and two installs of
one model at once.

Each refusal goes through the CLI's ``main`` in-process with ``refused`` (``tests/test_bad_input_doors.py``):
the exit code, exactly one ``error:`` sentence, no traceback, inputs byte-identical and nothing left behind.
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from labelfree_app.cli.main import main
from tests.test_bad_input_corpus import digest, field_image, model_path  # noqa: F401 - model_path is a fixture
from tests.test_bad_input_doors import _predict, _tree, ngff, refused


def _one_argparse_error(args: list[str], capsys: pytest.CaptureFixture[str], *words: str) -> None:
    """A setting refused where the command line is read: exit 2, one ``error:`` line naming it, no traceback."""
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert "Traceback" not in err and len(errors) == 1, err
    for word in words:
        assert word in errors[0], errors[0]


# --- 8. a damaged shard report is a sentence naming it, never a short merge ---------------------------
@pytest.fixture
def shards(tmp_path: Path, model_path: str) -> Path:
    (tmp_path / "in").mkdir()
    for index in range(6):
        tifffile.imwrite(tmp_path / "in" / f"w{index}.tif", field_image(20 + index))
    for k in (1, 2):
        assert main(["batch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", model_path, "-q",
                     "--device", "cpu", "--shard", f"{k}/2"]) == 0
    return tmp_path


@pytest.mark.parametrize("damage", ["cut", "no-rows", "rows-emptied"])
def test_a_damaged_shard_report_is_refused_naming_the_shard(damage: str, shards: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    part = shards / "out" / "batch_report.shard-1-of-2.json"
    document = json.loads(part.read_text())
    assert document["rows"]
    if damage == "cut":
        part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    elif damage == "no-rows":
        part.write_text(json.dumps({k: v for k, v in document.items() if k != "rows"}))
    else:  # rows and summary both emptied: only the input count across the shards tells
        document["rows"], document["summary"] = [], {k: 0 for k in document["summary"]}
        part.write_text(json.dumps(document))
    capsys.readouterr()
    words = ("batch_report.shard-1-of-2.json", "damaged") if damage != "rows-emptied" else ("disagree",)
    refused(["batch-report", "out"], shards, capsys, *words)
    assert not (shards / "out" / "batch_report.json").exists()


# --- 9. SIGTERM while an OME-Zarr output is being made -----------------------------------------------
def test_sigterm_while_an_ome_zarr_is_made_stops_cleanly(tmp_path: Path, model_path: str, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from labelfree_app.cli.exit_codes import EXIT_INTERRUPTED
    from labelfree_app.io import ome_zarr

    real = ome_zarr._temp_folder

    def temp_then_sigterm(target: Path) -> Path:
        temp = real(target)
        os.kill(os.getpid(), signal.SIGTERM)  # a scheduler's kill arrives just as the folder exists
        return temp

    monkeypatch.setattr(ome_zarr, "_temp_folder", temp_then_sigterm)
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "a.tif", field_image(30))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # so batch installs its own handler
    code = main(["batch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", model_path, "-q",
                 "--format", "ome-zarr", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == EXIT_INTERRUPTED and "Traceback" not in err, err
    left = sorted(p.name for p in (tmp_path / "out").iterdir())
    # The kill lands while the write runs on the writer thread (batch/writer.py): that write completes, so
    # the output is whole and the report says done; no temp folder, no half output, no lock either way.
    rows = json.loads((tmp_path / "out" / "batch_report.json").read_text())["rows"]
    assert left == ["a__test-unet.ome.zarr", "batch_report.csv", "batch_report.json"], left
    assert [r["status"] for r in rows] == ["done"], rows
    assert ome_zarr.read_ome_zarr(tmp_path / "out" / "a__test-unet.ome.zarr").data.shape[-2:] == field_image(30).shape


# --- 10. malformed NGFF metadata: one sentence each ---------------------------------------------------
def _multiscales(**dataset: object) -> list[dict[str, object]]:
    return [{"version": "0.5", "axes": [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"},
                                        {"name": "x", "type": "space"}],
             "datasets": [{"path": "s0", **dataset}]}]


def _store(path: Path, multiscales: object, shape: tuple[int, ...] = (1, 64, 64),
           chunks: tuple[int, ...] | None = None, data: bool = True) -> Path:
    group = zarr.open_group(str(path), mode="w")
    array = group.create_array("s0", shape=shape, dtype=np.float32, chunks=chunks or shape, fill_value=0)
    if data and all(shape):
        array[...] = field_image(31, shape[-2:])[None]
    group.attrs["ome"] = {"version": "0.5", "multiscales": multiscales}
    return path


NGFF_CASES = {
    "transforms-as-dict": (lambda p: _store(p, _multiscales(coordinateTransformations={"type": "scale"})),
                           "coordinateTransformations"),
    "scale-of-strings": (lambda p: _store(p, _multiscales(coordinateTransformations=[
        {"type": "scale", "scale": ["1", "a", "b"]}])), "scale"),
    "scale-a-number": (lambda p: _store(p, _multiscales(coordinateTransformations=[{"type": "scale", "scale": 2}])),
                       "scale"),
    "multiscales-a-dict": (lambda p: _store(p, {"datasets": []}), "multiscales"),
    "dataset-path-a-number": (lambda p: _store(p, [{"axes": ["c", "y", "x"], "datasets": [{"path": 0}]}]),
                              "dataset's path"),
    "zero-length-c": (lambda p: _store(p, _multiscales(), shape=(0, 64, 64), chunks=(1, 64, 64)), "C axis is 0"),
    "huge-and-empty": (lambda p: _store(p, _multiscales(), shape=(1, 200000, 200000), chunks=(1, 1024, 1024),
                                        data=False), "stores none of them"),
    "huge-chunks": (lambda p: _store(p, _multiscales(), shape=(1, 10 ** 6, 10 ** 6), data=False), "too large"),
}


@pytest.mark.parametrize("case", sorted(NGFF_CASES))
def test_malformed_ngff_metadata_is_one_sentence(case: str, tmp_path: Path, model_path: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    make, says = NGFF_CASES[case]
    make(tmp_path / "in.ome.zarr")
    refused(_predict("in.ome.zarr", model_path), tmp_path, capsys, "in.ome.zarr", says)


@pytest.mark.parametrize("plate", ["no-wells", "well-missing"])
def test_an_empty_plate_or_a_missing_well_is_one_sentence(plate: str, tmp_path: Path, model_path: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    group = zarr.open_group(str(tmp_path / "plate.ome.zarr"), mode="w")
    wells = [] if plate == "no-wells" else [{"path": "A/1", "rowIndex": 0, "columnIndex": 0}]
    group.attrs["ome"] = {"version": "0.5", "plate": {"rows": [{"name": "A"}], "columns": [{"name": "1"}],
                                                      "wells": wells}}
    refused(_predict("plate.ome.zarr", model_path), tmp_path, capsys, "plate.ome.zarr", "no images")


# --- 11. an empty frame of a time series is named ----------------------------------------------------
def test_an_all_nan_frame_of_a_time_series_is_named(tmp_path: Path, model_path: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    frames = np.stack([field_image(40 + t) for t in range(3)])
    frames[1] = np.nan
    tifffile.imwrite(tmp_path / "series.tif", frames, metadata={"axes": "TYX"})
    refused(_predict("series.tif", model_path), tmp_path, capsys, "Time point 2 of 3", "series.tif",
            "replace or remove that frame")


# --- 12. no output inside an input OME-Zarr ------------------------------------------------------------
@pytest.mark.parametrize("command, out", [("predict", "in.ome.zarr"), ("predict", "in.ome.zarr/out"),
                                          ("batch", "in.ome.zarr"), ("batch", "in.ome.zarr/sub/out")])
def test_an_output_folder_inside_an_input_store_is_refused(command: str, out: str, tmp_path: Path, model_path: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    ngff(tmp_path / "in.ome.zarr", field_image(50)[None].astype(np.float32))
    args = [command, "in.ome.zarr", "-o", out, "-q", "--model", model_path, "--device", "cpu"]
    refused(args, tmp_path, capsys, "inside the OME-Zarr input", "never writes into")


# --- 13. a folder of the user's at an output's name is never deleted ---------------------------------------
@pytest.mark.parametrize("command", ["predict", "batch"])
def test_a_folder_that_is_not_a_labelfree_output_is_not_replaced(command: str, tmp_path: Path, model_path: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "a.tif", field_image(51))
    mine = tmp_path / "out" / "a__test-unet.ome.zarr"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("my own work")
    args = [command, "in/a.tif" if command == "predict" else "in", "-o", "out", "-q", "--model", model_path,
            "--format", "ome-zarr", "--device", "cpu"]
    before = digest(tmp_path)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code = main(args)
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:") or line.startswith("failed:")]
    assert code == 1 and "Traceback" not in err and len(errors) == 1, err
    assert "not a LabelFree output" in errors[0] and "a__test-unet.ome.zarr" in errors[0], errors[0]
    assert (mine / "notes.txt").read_text() == "my own work"
    assert {k: v for k, v in digest(tmp_path).items() if "batch_report" not in str(k)} == before
    assert not [p for p in _tree(tmp_path / "out") if p.endswith(".part")]


def test_an_earlier_labelfree_ome_zarr_output_is_still_replaced(tmp_path: Path, model_path: str) -> None:
    tifffile.imwrite(tmp_path / "a.tif", field_image(52))
    args = ["predict", str(tmp_path / "a.tif"), "-o", str(tmp_path / "out"), "-q", "--model", model_path,
            "--format", "ome-zarr", "--device", "cpu"]
    assert main(args) == 0 and main(args) == 0


# --- 14. bioimage.io integrity ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def foreign_zip(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, bytes], Path]:
    pytest.importorskip("bioimageio.core", reason="the [bioimageio] extra is not installed")
    import zipfile

    from tests.models.test_bioimageio import _foreign_model

    path = _foreign_model(tmp_path_factory.mktemp("foreign") / "src")
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}, path


def _rezip(path: Path, members: dict[str, bytes]) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@pytest.mark.parametrize("damage", ["weights-changed", "pickled-test-tensor"])
def test_bioimageio_integrity_problems_are_one_clear_sentence(damage: str, foreign_zip: tuple[dict[str, bytes], Path],
                                                              tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    members = dict(foreign_zip[0])
    if damage == "weights-changed":
        weights = bytearray(members["net.onnx"])
        weights[-10] ^= 0xFF
        members["net.onnx"] = bytes(weights)
        says: tuple[str, ...] = ("net.onnx", "does not match the sha256", "download the model again")
    else:  # a pickle with its sha256 updated, as a hostile author would
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"run": "code"}], dtype=object), allow_pickle=True)
        old = hashlib.sha256(members["in.npy"]).hexdigest()
        members["in.npy"] = buffer.getvalue()
        members["rdf.yaml"] = members["rdf.yaml"].replace(old.encode(), hashlib.sha256(buffer.getvalue())
                                                          .hexdigest().encode())
        says = ("test tensor", "pickled", "never loads")
    _rezip(tmp_path / "model.zip", members)
    refused(["models", "import-bioimageio", "model.zip", "--out", "out"], tmp_path, capsys, "model.zip", *says)


# --- 15. training: data, settings, destination, checkpoints --------------------------------------------
def _train(folder: Path, *extra: str, target: str = "dna.tif") -> list[str]:
    return ["train", "--input", str(folder / "bf.tif"), "--target", str(folder / target), "--out",
            str(folder / "model"), "--max-steps", "2", "--patch", "32", "32", "--batch-size", "2", "--depth", "2",
            "--base-channels", "4", "--val-every", "1000", "--checkpoint-every", "1", "--device", "cpu",
            "--augment", "none", *extra]


@pytest.fixture
def pair(tmp_path: Path) -> Path:
    bright = field_image(60)
    tifffile.imwrite(tmp_path / "bf.tif", bright)
    tifffile.imwrite(tmp_path / "dna.tif", (bright * 0.5 + field_image(61) * 0.1).astype(np.float32))
    return tmp_path


@pytest.mark.parametrize("target, says", [("nan", "not finite numbers"), ("zero", "is all zero"),
                                          ("constant", "same value (7) everywhere")])
def test_a_target_without_signal_is_refused_before_training(target: str, says: str, pair: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    pixels = {"nan": np.where(field_image(62) > 600, np.nan, field_image(62)).astype(np.float32),
              "zero": np.zeros((64, 64), np.float32), "constant": np.full((64, 64), 7, np.uint16)}[target]
    tifffile.imwrite(pair / "bad.tif", pixels)
    refused(_train(pair, target="bad.tif"), pair, capsys, "bad.tif", says)


@pytest.mark.parametrize("option, value", [("--max-minutes", "0"), ("--max-minutes", "-5"), ("--max-minutes", "nan"),
                                           ("--max-minutes", "inf"), ("--max-steps", "0"), ("--val-every", "0"),
                                           ("--lr", "0"), ("--lr", "-1"), ("--lr", "nan")])
def test_settings_no_run_can_use_are_refused_where_the_command_is_read(option: str, value: str, pair: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    _one_argparse_error(_train(pair, option, value), capsys, option, value)
    assert not (pair / "model").exists() and not (pair / "model.training").exists()


def _fifo(folder: Path) -> str:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    os.mkfifo(folder / "pipe.tif")
    return "pipe.tif"


@pytest.mark.parametrize("case", ["target-folder", "target-fifo", "extra-cells", "utf16"])
def test_a_bad_pairs_csv_is_one_sentence(case: str, pair: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, says = "input,target\nbf.tif,dna.tif\n", ()
    if case == "target-folder":
        (pair / "folder.tif").mkdir()
        text, says = "input,target\nbf.tif,folder.tif\n", ("folder.tif", "is a folder")
    elif case == "target-fifo":
        text, says = f"input,target\nbf.tif,{_fifo(pair)}\n", ("pipe.tif", "not a regular file")
    elif case == "extra-cells":
        text, says = "input,target\nbf.tif,dna.tif,oops\n", ("Row 2", "more cells")
    encoding = "utf-16" if case == "utf16" else "utf-8"
    says = says or ("UTF-16", "CSV UTF-8")
    (pair / "pairs.csv").write_bytes(text.encode(encoding))
    args = [a for a in _train(pair) if a not in ("--input", str(pair / "bf.tif"), "--target", str(pair / "dna.tif"))]
    refused(args + ["--pairs", str(pair / "pairs.csv")], pair, capsys, *says)


def test_an_output_path_that_is_a_file_is_refused_up_front(pair: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (pair / "model").write_text("a file, not a folder")
    refused(_train(pair), pair, capsys, "model", "is a file")


def test_a_bad_model_id_is_refused_before_training(pair: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused(_train(pair, "--id", "Bad Id!"), pair, capsys, "Bad Id!", "a-z, 0-9")


@pytest.fixture
def checkpointed(pair: Path) -> Path:
    assert main(_train(pair)) == 0
    return pair


def _damage(checkpoint: Path, how: str) -> None:
    import torch
    from safetensors.torch import save_file

    if how == "cut":
        weights = checkpoint / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "wrong-shape":
        save_file({"nothing.like.ours": torch.zeros(3, 5)}, str(checkpoint / "model.safetensors"))
    elif how == "hostile-optimizer":
        class Boom:
            def __reduce__(self) -> tuple[object, tuple[str]]:
                return (print, ("code ran",))

        torch.save({"optimizer": Boom()}, checkpoint / "optimizer.pt")
    elif how == "optimizer-shapes":
        blob = torch.load(checkpoint / "optimizer.pt", weights_only=True)
        for state in blob["optimizer"]["state"].values():
            state["exp_avg"] = torch.zeros(2, 2, 2, 2, 2)
        torch.save(blob, checkpoint / "optimizer.pt")
    else:  # no step
        state = json.loads((checkpoint / "state.json").read_text())
        del state["step"]
        (checkpoint / "state.json").write_text(json.dumps(state))


@pytest.mark.parametrize("how", ["cut", "wrong-shape", "hostile-optimizer", "optimizer-shapes", "no-step"])
def test_a_damaged_checkpoint_on_resume_is_one_sentence(how: str, checkpointed: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    newest = sorted((checkpointed / "model.training" / "checkpoints").iterdir())[-1]
    _damage(newest, how)
    capsys.readouterr()
    message = refused(_train(checkpointed, "--resume", "--overwrite", "--max-steps", "4"), checkpointed, capsys,
                      newest.name, "cannot be resumed", "delete that folder")
    assert "code ran" not in capsys.readouterr().out + message


# --- 16. two installs of one model at once --------------------------------------------------------------
def test_two_installs_of_the_same_id_at_once_give_one_model_and_one_sentence(tmp_path: Path, model_path: str,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from labelfree_app.errors import ModelError
    from labelfree_app.models import registry as registry_module
    from labelfree_app.models.registry import ModelRegistry

    real = registry_module.run_smoke_test

    def slow_smoke_test(package: object) -> object:
        time.sleep(0.5)  # both installs are past their first look before either copies
        return real(package)

    monkeypatch.setattr(registry_module, "run_smoke_test", slow_smoke_test)
    outcomes: list[object] = []

    def install() -> None:
        try:
            outcomes.append(ModelRegistry(bundled_dir=tmp_path / "none", user_dir=tmp_path / "user")
                            .install(model_path))
        except ModelError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=install) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors = [o for o in outcomes if isinstance(o, ModelError)]
    assert len(errors) == 1 and "already installed" in str(errors[0]), outcomes
    assert sorted(p.name for p in (tmp_path / "user").iterdir() if not p.name.startswith(".")) == ["test-unet"]
    assert not [p for p in (tmp_path / "user").iterdir() if p.name.endswith((".partial", ".old", ".lock"))]
