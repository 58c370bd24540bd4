"""The `labelfree` command line, driven in-process through `main(argv)`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from labelfree_app.cli.main import main
from labelfree_app.io import read_image, read_provenance, write_image
from tests.synthetic_cells import render_cells
from tests.factories import constant_calibration, make_diffusion_package, make_unet_package, trust_block


@pytest.fixture()
def bf_file(tmp_path: Path) -> Path:
    cells = render_cells((96, 120), seed=1)
    path = tmp_path / "in" / "field.tif"
    path.parent.mkdir()
    write_image(path, np.stack([cells.brightfield, cells.nuclei])[:, None], "CZYX",
                channel_names=["Brightfield", "Hoechst"])
    return path


def test_predict_writes_an_ome_tiff_with_provenance(tmp_path, bf_file, capsys):
    package = make_unet_package(tmp_path / "models")
    before = bf_file.read_bytes()
    code = main(["predict", str(bf_file), "-o", str(tmp_path / "out"), "--model", str(package.path), "-q"])
    assert code == 0
    out = tmp_path / "out" / "field__test-unet.ome.tif"
    assert str(out) in capsys.readouterr().out
    image = read_image(out)
    assert image.data.shape == (1, 1, 96, 120) and image.dtype == np.float32
    meta = read_provenance(out)
    assert meta["model"]["id"] == "test-unet"
    assert meta["inputs"][0]["sha256"] and meta["inputs"][0]["path"].endswith("field.tif")
    assert bf_file.read_bytes() == before  # the input is never touched


def test_predict_diffusion_writes_mean_variance_and_steps(tmp_path, bf_file):
    package = make_diffusion_package(tmp_path / "models")
    code = main(["predict", str(bf_file), "-o", str(tmp_path / "out"), "--model", str(package.path),
                 "--samples", "2", "--steps", "3", "--sampler", "ddim", "--seed", "0", "--save-steps", "3", "-q"])
    assert code == 0
    stem = tmp_path / "out" / "field__test-diffusion"
    mean = read_image(Path(f"{stem}.ome.tif"))
    variance = read_image(Path(f"{stem}__variance.ome.tif"))
    steps = read_image(Path(f"{stem}__steps.ome.tif"))
    assert mean.data.shape == variance.data.shape == (1, 1, 96, 120)
    assert steps.data.shape[0] == 3 and steps.axes.startswith("T")
    assert read_provenance(Path(f"{stem}__variance.ome.tif"))["settings"]["samples"] == 2


def test_predict_reports_bad_files_in_one_sentence_and_goes_on(tmp_path, bf_file, capsys):
    package = make_unet_package(tmp_path / "models")
    bad = bf_file.parent / "broken.tif"
    bad.write_bytes(b"this is not a tiff at all")
    code = main(["predict", str(bad), str(bf_file), "-o", str(tmp_path / "out"), "--model", str(package.path), "-q"])
    captured = capsys.readouterr()
    assert code == 1
    assert "broken.tif" in captured.err and "Traceback" not in captured.err
    assert (tmp_path / "out" / "field__test-unet.ome.tif").exists()


def test_predict_prints_the_trust_estimate_and_warns_when_not_trustworthy(tmp_path, bf_file, capsys, monkeypatch):
    from labelfree_app.core import trust_recorder

    package = make_unet_package(tmp_path / "models")
    monkeypatch.setattr(trust_recorder, "bundled_calibration", lambda path=None: constant_calibration(0.3))
    assert main(["predict", str(bf_file), "-o", str(tmp_path / "low"), "--model", str(package.path)]) == 0
    captured = capsys.readouterr()
    assert "field.tif: expected r 0.30 (0.20-0.40): not trustworthy" in captured.err
    (warning,) = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert warning.startswith("warning: field.tif: the prediction is not trustworthy. Why: ")
    assert "fine-tune" in warning  # the advice
    assert "expected r" not in captured.out  # stdout stays the list of written files
    monkeypatch.setattr(trust_recorder, "bundled_calibration", lambda path=None: constant_calibration(0.85))
    assert main(["predict", str(bf_file), "-o", str(tmp_path / "high"), "--model", str(package.path)]) == 0
    captured = capsys.readouterr()
    assert "field.tif: expected r 0.85 (0.75-0.95): good" in captured.err and "warning:" not in captured.err


def test_quiet_predict_keeps_the_trust_warning_and_drops_the_estimate_line(tmp_path, bf_file, capsys, monkeypatch):
    from labelfree_app.core import trust_recorder

    package = make_unet_package(tmp_path / "models")
    monkeypatch.setattr(trust_recorder, "bundled_calibration", lambda path=None: constant_calibration(0.3))
    assert main(["predict", str(bf_file), "-o", str(tmp_path / "low"), "--model", str(package.path), "-q"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: field.tif: the prediction is not trustworthy.")
    monkeypatch.setattr(trust_recorder, "bundled_calibration", lambda path=None: constant_calibration(0.85))
    assert main(["predict", str(bf_file), "-o", str(tmp_path / "high"), "--model", str(package.path), "-q"]) == 0
    assert not capsys.readouterr().err.strip()


def test_predict_trust_map_writes_the_familiarity_beside_the_prediction(tmp_path, bf_file, capsys):
    package = make_unet_package(tmp_path / "models", model_id="trusty", trust=trust_block())
    assert main(["predict", str(bf_file), "-o", str(tmp_path / "out"), "--model", str(package.path),
                 "--trust-map", "-q"]) == 0
    trust_file = tmp_path / "out" / "field__trusty__trust.ome.tif"
    assert str(trust_file) in capsys.readouterr().out
    familiar = read_image(trust_file)
    assert familiar.data.shape == (1, 1, 96, 120)
    assert 0.0 <= float(familiar.data.min()) <= float(familiar.data.max()) <= 1.0
    assert read_provenance(trust_file)["settings"] == read_provenance(tmp_path / "out" / "field__trusty.ome.tif")[
        "settings"]


def test_models_info_adds_the_trust_part_of_the_card_on_stderr(tmp_path, capsys):
    package = make_unet_package(tmp_path / "src", model_id="trusty", trust=trust_block())
    assert main(["models", "install", str(package.path)]) == 0
    capsys.readouterr()
    assert main(["models", "info", "trusty"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["trust"]["method"] == "lf-trust-1"
    assert captured.err.startswith("Trust\n") and "Input profile: yes" in captured.err


def test_unknown_model_is_a_clear_error(tmp_path, bf_file, capsys):
    assert main(["predict", str(bf_file), "-o", str(tmp_path / "out"), "--model", "no-such-model"]) == 1
    assert "no-such-model" in capsys.readouterr().err


def test_models_install_list_json_info_default_remove(tmp_path, capsys):
    package = make_unet_package(tmp_path / "src", model_id="my-unet")
    assert main(["models", "install", str(package.path)]) == 0
    capsys.readouterr()
    assert main(["models", "list", "--json"]) == 0
    listed = {m["id"]: m for m in json.loads(capsys.readouterr().out)}
    entry = listed["my-unet"]
    assert {"id", "kind", "target", "dims", "input_channels", "default"} <= set(entry)
    assert entry["kind"] == "unet" and entry["dims"] == 2 and entry["input_channels"] == 1
    assert main(["models", "info", "my-unet"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == "my-unet"
    assert main(["models", "default", "DNA", "my-unet"]) == 0
    capsys.readouterr()
    main(["models", "list", "--json"])
    assert {m["id"]: m for m in json.loads(capsys.readouterr().out)}["my-unet"]["default"] is True
    assert main(["models", "remove", "my-unet"]) == 0
    capsys.readouterr()
    main(["models", "list", "--json"])
    assert "my-unet" not in {m["id"] for m in json.loads(capsys.readouterr().out)}


def test_train_then_evaluate_from_the_command_line(tmp_path, capsys):
    pairs = []
    for seed in (1, 2):
        cells = render_cells((128, 128), seed=seed)
        write_image(tmp_path / f"bf{seed}.tif", cells.brightfield, "YX")
        write_image(tmp_path / f"dna{seed}.tif", cells.nuclei, "YX")
        pairs.append(f"{tmp_path / f'bf{seed}.tif'},{tmp_path / f'dna{seed}.tif'}")
    csv = tmp_path / "pairs.csv"
    csv.write_text("input,target\n" + "\n".join(pairs) + "\n")
    out = tmp_path / "model"
    code = main(["train", "--pairs", str(csv), "--out", str(out), "--max-steps", "30", "--depth", "2",
                 "--base-channels", "8", "--patch", "64", "64", "--batch-size", "4", "--val-region", "0:64,0:64",
                 "--val-every", "15", "--target-name", "DNA", "--device", "cpu"])
    assert code == 0
    assert (out / "manifest.json").exists() and (out / "weights.safetensors").exists()
    capsys.readouterr()
    report = tmp_path / "report.json"
    assert main(["evaluate", "--model", str(out), "--pairs", str(csv), "--region", "0:64,0:64",
                 "--device", "cpu", "--json", str(report)]) == 0
    assert "pearson" in capsys.readouterr().out.lower()
    assert json.loads(report.read_text())


def test_train_refuses_mismatched_pairs_before_training(tmp_path, capsys):
    write_image(tmp_path / "a.tif", np.ones((64, 64), np.uint16), "YX")
    write_image(tmp_path / "b.tif", np.ones((64, 80), np.uint16), "YX")
    code = main(["train", "--input", str(tmp_path / "a.tif"), "--target", str(tmp_path / "b.tif"),
                 "--out", str(tmp_path / "m"), "--max-steps", "5"])
    assert code == 1
    err = capsys.readouterr().err
    assert "a.tif" in err and "b.tif" in err


def test_predict_without_a_model_uses_the_bundled_model_that_fits_the_input(tmp_path, capsys, shared_data):
    """A single plane goes to the generalist lf-nuclei-2d; the ISL 13-plane stack to the ISL DAPI model."""
    from labelfree_app.io import read_plane_series

    stack = np.asarray(read_plane_series(str(shared_data / "isl_condition_b" / "z_depth-*_PHASE_CONTRAST.png")).data[0])
    crop = stack[:, 512:768, 512:768]
    write_image(tmp_path / "plane.tif", crop[6], "YX")
    write_image(tmp_path / "stack.tif", crop, "ZYX")
    assert main(["predict", str(tmp_path / "plane.tif"), str(tmp_path / "stack.tif"), "-o", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert (tmp_path / "out" / "plane__lf-nuclei-2d.ome.tif").is_file()
    assert (tmp_path / "out" / "stack__isl-dapi-unet.ome.tif").is_file()
    assert "model: lf-nuclei-2d (the default for a single plane)" in captured.err
    assert "model: isl-dapi-unet (the default for a 13-plane z-stack)" in captured.err


def test_batch_without_a_model_uses_the_bundled_model_that_fits_the_first_input(tmp_path, bf_file, capsys):
    assert main(["batch", str(bf_file), "-o", str(tmp_path / "out"), "-q"]) == 0
    assert "model: lf-nuclei-2d (the default for a single plane" in capsys.readouterr().err
    assert (tmp_path / "out" / "field__lf-nuclei-2d.ome.tif").is_file()


def test_gui_command_opens_the_app_through_its_own_entry_point(monkeypatch):
    import labelfree_app.__main__ as gui_entry

    calls: list[list[str]] = []
    monkeypatch.setattr(gui_entry, "main", lambda files: calls.append(list(files)) or 0)
    assert main(["gui", "a.tif", "b.tif"]) == 0
    assert calls == [["a.tif", "b.tif"]]


def test_the_cli_package_stands_beside_the_gui_and_shares_no_private_names():
    import re

    import labelfree_app.cli

    folder = Path(labelfree_app.cli.__file__).parent
    sources = {p.name: p.read_text(encoding="utf-8") for p in folder.glob("*.py")}
    assert {"main.py", "options.py", "predict.py", "batch.py", "train.py", "models.py"} <= set(sources)
    for name, text in sources.items():
        assert not re.search(r"^\s*(from|import) labelfree_app(\.gui|\.__main__)\b|^\s*from labelfree_app import "
                             r"[^\n]*\b(gui|__main__)\b", text, re.MULTILINE), name
        assert not re.search(r"^\s*from labelfree_app\.cli\.\w+ import [^\n]*\b_\w+", text, re.MULTILINE), name
