"""The bad-input corpus: every odd input, destination and path through the CLI (as a subprocess, so a
traceback, a hang or a wrong exit code shows exactly as a user would see it) and through the GUI's
backend. Each case asserts the exit code, no traceback, one sentence naming the file, outputs either
correct or absent, and inputs untouched. The files are generated here; nothing big is committed.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import tifffile

from labelfree_app.errors import LabelFreeError
from labelfree_app.io import read_image, write_image
from tests.factories import make_unet_package

ROOT = Path(__file__).resolve().parent.parent
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def field_image(seed: int = 0, shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32) * 1000 + 100


def write_huge_claim(path: Path) -> None:
    """A 2 KB tiled TIFF whose header claims 100000×100000 float64 pixels (75 GB)."""
    with tifffile.TiffWriter(path) as writer:
        writer.write(np.zeros((512, 512), np.float64), compression="zlib", tile=(256, 256), metadata=None)
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        for name, value in (("ImageWidth", 100000), ("ImageLength", 100000), ("TileWidth", 65536),
                            ("TileLength", 65536)):
            tag = tags[name]
            fmt = {3: "<H", 4: "<I"}[tag.dtype]
            data[tag.valueoffset:tag.valueoffset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.write_bytes(bytes(data))


@dataclass
class Case:
    """One bad input: how to make it, the command's arguments, and what must happen."""

    name: str
    make: Callable[[Path], list[str]]  # builds files under the folder, returns the CLI arguments
    exit_code: int
    says: tuple[str, ...] = ()  # words the one sentence must hold (file names, what to do)
    check: Callable[[Path], None] | None = None  # checks the outputs of a successful run
    outputs_absent: bool = True
    needs_permissions: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)


def _predict(inputs: list[str], out: str = "out") -> list[str]:
    return ["predict", *inputs, "-o", out, "-q", "--model", "{model}"]


def _make_nan(folder: Path) -> list[str]:
    pixels = field_image()
    pixels[10, 10] = np.nan
    pixels[40:44, 5:9] = np.inf
    tifffile.imwrite(folder / "nan.tif", pixels)
    return _predict(["nan.tif"])


def _check_nan(folder: Path) -> None:
    out = tifffile.imread(folder / "out" / "nan__test-unet.ome.tif")
    source = tifffile.imread(folder / "nan.tif")
    assert np.array_equal(np.isnan(out), ~np.isfinite(source))  # NaN exactly where the input was not finite


def _make_time_series(folder: Path) -> list[str]:
    data = np.stack([field_image(1), field_image(2), field_image(3)])[:, None]  # T, C, Y, X
    tifffile.imwrite(folder / "series.tif", data, imagej=True, metadata={"axes": "TCYX"})
    return _predict(["series.tif"]) + ["--channel", "0"]


def _check_time_series(folder: Path) -> None:
    out = read_image(folder / "out" / "series__test-unet.ome.tif")
    assert out.n_timepoints == 3
    planes = np.asarray(out.data)[:, 0, 0]
    assert not np.allclose(planes[0], planes[1])  # each time point was predicted, not one copied


def _make_empty_folder(folder: Path) -> list[str]:
    (folder / "empty").mkdir()
    return _predict(["empty"])


def _make_folder_named_tif(folder: Path) -> list[str]:
    (folder / "x.tif").mkdir()
    return _predict(["x.tif"])


def _make_same_names(folder: Path) -> list[str]:
    for sub in ("a", "b"):
        (folder / sub).mkdir()
        tifffile.imwrite(folder / sub / "x.tif", field_image())
    return _predict(["a/x.tif", "b/x.tif"])


def _make_symlink_loop(folder: Path) -> list[str]:
    os.symlink("loop.tif", folder / "loop.tif")
    return _predict(["loop.tif"])


def _make_batch_symlink_loop(folder: Path) -> list[str]:
    os.symlink("loop.tif", folder / "loop.tif")
    return ["batch", "loop.tif", "-o", "out", "--model", "{model}"]


def _make_output_is_file(folder: Path) -> list[str]:
    tifffile.imwrite(folder / "good.tif", field_image())
    (folder / "taken").write_text("a file, not a folder")
    return _predict(["good.tif"], out="taken")


def _make_output_below_file(folder: Path) -> list[str]:
    tifffile.imwrite(folder / "good.tif", field_image())
    (folder / "taken").write_text("a file, not a folder")
    return _predict(["good.tif"], out="taken/sub")


def _make_output_in_proc(folder: Path) -> list[str]:
    tifffile.imwrite(folder / "good.tif", field_image())
    return _predict(["good.tif"], out="/proc/labelfree-test/out")


def _make_read_only_parent(folder: Path) -> list[str]:
    tifffile.imwrite(folder / "good.tif", field_image())
    (folder / "locked").mkdir()
    (folder / "locked").chmod(0o555)
    return _predict(["good.tif"], out="locked/out")


def _make_unreadable_folder(folder: Path) -> list[str]:
    (folder / "private").mkdir()
    tifffile.imwrite(folder / "private" / "in.tif", field_image())
    (folder / "private").chmod(0)
    return _predict(["private"])


def _make_huge(folder: Path) -> list[str]:
    write_huge_claim(folder / "huge.tif")
    return _predict(["huge.tif"])


def _make_fifo(folder: Path) -> list[str]:
    os.mkfifo(folder / "pipe.tif")
    return _predict(["pipe.tif"])


def _make_text(folder: Path) -> list[str]:
    (folder / "notes.tif").write_text("these are lab notes, not an image\n")
    return _predict(["notes.tif"])


def _make_zero_bytes(folder: Path) -> list[str]:
    (folder / "zero.tif").write_bytes(b"")
    return _predict(["zero.tif"])


def _make_truncated(folder: Path) -> list[str]:
    tifffile.imwrite(folder / "full.tif", field_image(shape=(256, 256)))
    data = (folder / "full.tif").read_bytes()
    (folder / "cut.tif").write_bytes(data[: len(data) // 2])
    (folder / "full.tif").unlink()
    return _predict(["cut.tif"])


def _make_complex(folder: Path) -> list[str]:
    tifffile.imwrite(folder / "complex.tif", field_image().astype(np.complex64))
    return _predict(["complex.tif"])


def _make_rgb(folder: Path) -> list[str]:
    tifffile.imwrite(folder / "colour.tif", (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8),
                     photometric="rgb")
    return _predict(["colour.tif"])


def _make_rgb_luminance(folder: Path) -> list[str]:
    return _make_rgb(folder) + ["--rgb", "luminance"]


def _check_rgb_luminance(folder: Path) -> None:
    out = tifffile.imread(folder / "out" / "colour__test-unet.ome.tif")
    assert out.shape == (64, 64) and np.isfinite(out).all()


def _make_missing_channel(folder: Path) -> list[str]:
    write_image(folder / "two.tif", np.stack([field_image(1), field_image(2)])[:, None], "CZYX",
                channel_names=["Brightfield", "Hoechst"])
    return _predict(["two.tif"]) + ["--channel", "DIC"]


def _make_all_nan(folder: Path) -> list[str]:
    tifffile.imwrite(folder / "blank.tif", np.full((64, 64), np.nan, np.float32))
    return _predict(["blank.tif"])


def _make_missing_model(folder: Path) -> list[str]:
    tifffile.imwrite(folder / "good.tif", field_image())
    return ["predict", "good.tif", "-o", "out", "-q", "--model", "no-such-model"]


def _make_missing_file(folder: Path) -> list[str]:
    return _predict(["nowhere.tif"])


def _make_bad_tile(folder: Path) -> list[str]:
    tifffile.imwrite(folder / "good.tif", field_image())
    return _predict(["good.tif"]) + ["--tile", "0", "0"]


CASES = [
    Case("nan-and-inf-pixels", _make_nan, 0, ("nan.tif", "non-finite"), check=_check_nan, outputs_absent=False),
    Case("time-series", _make_time_series, 0, (), check=_check_time_series, outputs_absent=False),
    Case("empty-folder", _make_empty_folder, 1, ("empty", "no TIFF or PNG")),
    Case("folder-named-x.tif", _make_folder_named_tif, 1, ("x.tif", "folder")),
    Case("same-file-names", _make_same_names, 1, ("a/x.tif", "b/x.tif", "same output names")),
    Case("symlink-loop", _make_symlink_loop, 1, ("loop.tif", "loop")),
    Case("batch-symlink-loop", _make_batch_symlink_loop, 1, ("loop.tif", "loop")),
    Case("output-is-a-file", _make_output_is_file, 1, ("taken", "not a folder")),
    Case("output-below-a-file", _make_output_below_file, 1, ("taken", "not a folder")),
    Case("output-in-proc", _make_output_in_proc, 1, ("/proc/labelfree-test/out", "cannot be created")),
    Case("read-only-parent", _make_read_only_parent, 1, ("locked/out", "cannot be created"), needs_permissions=True),
    Case("unreadable-folder", _make_unreadable_folder, 1, ("private", "permission denied"), needs_permissions=True),
    Case("huge-claimed-size", _make_huge, 1, ("huge.tif", "100000×100000", "free memory")),
    Case("fifo", _make_fifo, 1, ("pipe.tif", "not a regular file")),
    Case("text-renamed-tif", _make_text, 1, ("notes.tif", "not a TIFF")),
    Case("zero-bytes", _make_zero_bytes, 1, ("zero.tif", "empty")),
    Case("truncated", _make_truncated, 1, ("cut.tif",)),
    Case("complex-pixels", _make_complex, 1, ("complex.tif",)),
    Case("rgb", _make_rgb, 1, ("colour.tif", "--rgb luminance")),
    Case("rgb-luminance", _make_rgb_luminance, 0, (), check=_check_rgb_luminance, outputs_absent=False),
    Case("missing-channel", _make_missing_channel, 1, ("two.tif", "DIC", "Brightfield")),
    Case("all-nan", _make_all_nan, 1, ("blank.tif", "no finite")),
    Case("missing-model", _make_missing_model, 1, ("no-such-model",)),
    Case("missing-file", _make_missing_file, 1, ("nowhere.tif", "does not exist")),
    Case("bad-tile", _make_bad_tile, 1, ("tile shape", "(0, 0)")),
    Case("negative-samples", lambda f: _make_bad_tile(f)[:-3] + ["--samples", "-2"], 1, ("samples", "-2")),
]


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every regular file under ``folder`` except outputs (inputs must stay untouched)."""
    found = {}
    for path in folder.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink() and "out" not in path.relative_to(folder).parts:
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            continue
    return found


def run_cli(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LABELFREE_BACKEND": "torch"}
    return subprocess.run([sys.executable, "-m", "labelfree_app.cli", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(make_unet_package(tmp_path_factory.mktemp("models")).path)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cli_case(case: Case, tmp_path: Path, model_path: str) -> None:
    if case.needs_permissions and IS_ROOT:
        pytest.skip("root ignores folder permissions; the in-process tests cover these messages")
    work = tmp_path / "work"
    work.mkdir()
    args = [a.replace("{model}", model_path) for a in case.make(work)]
    before = digest(work)
    try:
        done = run_cli(args, work, timeout=120)
    finally:
        for path in work.rglob("*"):  # let pytest clean up what the case locked
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == case.exit_code, (done.returncode, done.stderr)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    if case.exit_code:
        assert len(errors) == 1, done.stderr
        for words in case.says:
            assert words in errors[0], errors[0]
    else:
        assert not errors, done.stderr
        for words in case.says:
            assert words in done.stderr, done.stderr
    out = work / "out"
    if case.outputs_absent:
        assert not out.exists() or not any(out.rglob("*.tif")), list(out.rglob("*"))
    if case.check is not None:
        case.check(work)
    after = digest(work)
    assert {k: after.get(k) for k in before} == before  # every input still there, byte-identical


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`labelfree models list | head -1`: the reader leaves early; no BrokenPipeError traceback."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    pipeline = (f"{sys.executable} -m labelfree_app.cli models info lf-nuclei-2d | head -c 1 >/dev/null; "
                "echo ${PIPESTATUS[0]}")
    done = subprocess.run(["bash", "-c", pipeline], cwd=tmp_path, env=env, text=True, capture_output=True,
                          timeout=120)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.stdout.strip() in ("0", "141")


def test_an_unexpected_error_is_one_sentence_and_the_traceback_goes_to_the_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        labelfree_home: Path) -> None:
    from labelfree_app.cli import system
    from labelfree_app.cli.exit_codes import EXIT_ERROR
    from labelfree_app.cli.main import main

    def broken(args: object) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(system, "cmd_devices", broken)
    assert main(["devices"]) == EXIT_ERROR
    err = capsys.readouterr().err
    log = labelfree_home / "logs" / "labelfree.log"
    assert err.count("\n") == 1 and "ZeroDivisionError" in err and str(log) in err
    assert "Traceback" in log.read_text() and "a bug" in log.read_text()


# --- the same files through the GUI's backend ------------------------------------------------------
GUI_CASES = ["text-renamed-tif", "zero-bytes", "truncated", "complex-pixels", "huge-claimed-size", "fifo",
             "symlink-loop", "all-nan", "folder-named-x.tif"]


@pytest.mark.parametrize("name", GUI_CASES)
def test_gui_backend_reads_bad_files_with_one_sentence(name: str, tmp_path: Path) -> None:
    from labelfree_app.gui.backend import CoreBackend

    case = next(c for c in CASES if c.name == name)
    args = case.make(tmp_path)
    path = tmp_path / next(a for a in args[1:] if not a.startswith("-"))
    with pytest.raises(LabelFreeError) as caught:
        CoreBackend().read_image(path)
    message = str(caught.value)
    assert path.name in message and message.count(". ") <= 1 and "\n" not in message


def test_gui_backend_predicts_nan_pixels_as_nan_and_says_so(tmp_path: Path, model_path: str) -> None:
    from labelfree_app.gui.backend import CoreBackend
    from labelfree_app.models.registry import ModelRegistry

    _make_nan(tmp_path)
    backend = CoreBackend()
    ModelRegistry().install(Path(model_path))
    image = backend.read_image(tmp_path / "nan.tif")
    result = list(backend.run(image, "test-unet", {"device": "cpu"}))[-1]
    source = tifffile.imread(tmp_path / "nan.tif")
    assert np.array_equal(np.isnan(result.prediction[0, 0]), ~np.isfinite(source))
    assert result.notes and "non-finite" in result.notes[0]


def test_gui_backend_predicts_the_shown_time_point_and_says_so(tmp_path: Path, model_path: str) -> None:
    from labelfree_app.gui.backend import CoreBackend
    from labelfree_app.models.registry import ModelRegistry

    _make_time_series(tmp_path)
    ModelRegistry().install(Path(model_path))
    backend = CoreBackend()
    result = list(backend.run(backend.read_image(tmp_path / "series.tif"), "test-unet", {"device": "cpu"}))[-1]
    assert result.prediction.shape == (1, 1, 64, 64) and result.axes == "CZYX"
    assert "Time point 1 of 3" in result.notes[0]


def print_table() -> None:
    """`python -m tests.test_bad_input_corpus`: the corpus as a table (case, exit code, what was said)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LABELFREE_HOME"] = str(Path(tmp) / "home")
        model = str(make_unet_package(Path(tmp) / "models").path)
        print("| case | exit | outcome | what the user reads |\n|---|---|---|---|")
        for case in CASES:
            work = Path(tmp) / case.name
            work.mkdir()
            if case.needs_permissions and IS_ROOT:
                print(f"| {case.name} | — | not run as root | — |")
                continue
            args = [a.replace("{model}", model) for a in case.make(work)]
            done = run_cli(args, work)
            for path in work.rglob("*"):
                if path.is_dir() and not path.is_symlink():
                    path.chmod(0o755)
            said = [line for line in done.stderr.splitlines() if line.startswith(("error:", "warning:"))]
            outcome = ("traceback" if "Traceback" in done.stderr else
                       "clear error" if done.returncode else "correct output")
            print(f"| {case.name} | {done.returncode} | {outcome} | {' '.join(said).replace('|', '/')} |")


if __name__ == "__main__":
    print_table()


# --- input discovery, in-process (permissions cannot be tested as root) ----------------------------
def test_an_unreadable_sub_folder_is_one_sentence_not_a_silent_gap(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from labelfree_app.batch.plan import find_inputs

    for sub in ("open", "closed"):
        (tmp_path / "data" / sub).mkdir(parents=True)
        tifffile.imwrite(tmp_path / "data" / sub / "x.tif", field_image())
    real_scandir = os.scandir

    def scandir(path: object = ".") -> object:
        if str(path).endswith("closed"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(LabelFreeError, match="closed cannot be read .Permission denied"):
        find_inputs([tmp_path / "data"])


def test_linked_folders_are_followed_once_and_a_link_up_the_tree_ends(tmp_path: Path) -> None:
    from labelfree_app.batch.plan import find_inputs

    (tmp_path / "store").mkdir()
    tifffile.imwrite(tmp_path / "store" / "y.tif", field_image())
    (tmp_path / "data").mkdir()
    tifffile.imwrite(tmp_path / "data" / "x.tif", field_image())
    os.symlink(tmp_path / "store", tmp_path / "data" / "linked")
    os.symlink(tmp_path / "data", tmp_path / "data" / "up")  # a loop
    found = find_inputs([tmp_path / "data"])
    assert sorted(entry.key for entry in found) == ["linked/y.tif", "x.tif"]


def test_a_bug_on_one_input_is_one_sentence_with_the_log_and_the_traceback_stays_in_the_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        labelfree_home: Path, model_path: str) -> None:
    from labelfree_app.cli.main import main
    from labelfree_app.core.engine import PredictionEngine

    def broken(self: object, image: object, settings: object = None) -> object:
        raise ZeroDivisionError("a bug in the engine")
        yield  # a generator, as the real one

    tifffile.imwrite(tmp_path / "good.tif", field_image())
    monkeypatch.setattr(PredictionEngine, "run", broken)
    code = main(["predict", str(tmp_path / "good.tif"), "-o", str(tmp_path / "out"), "-q", "--model", model_path])
    err = capsys.readouterr().err
    log = labelfree_home / "logs" / "labelfree.log"
    assert code == 1 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [err.strip()]
    assert "ZeroDivisionError" in err and str(log) in err
    assert "Traceback" in log.read_text() and "a bug in the engine" in log.read_text()
