"""What the Train page relies on, without Qt: pairing dropped files, checking pairs, presets, previews."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from labelfree_app.errors import TrainingDataError
from labelfree_app.training.config import PairSpec
from labelfree_app.training.events import ValidationDone
from labelfree_app.training.loop import run_training
from labelfree_app.training.pair_check import check_pairs, thumbnail
from labelfree_app.training.pair_sources import pairs_from_files, pairs_from_sources
from labelfree_app.training.presets import auto_val_region, config_from_choices, default_out_dir

from .conftest import tiny_config, write_pair


def _touch(folder: Path, *names: str, shape: tuple[int, int] = (8, 8)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        tifffile.imwrite(folder / name, np.zeros(shape, np.uint16))
        paths.append(folder / name)
    return paths


def test_dropped_files_pair_by_name_then_by_order(tmp_path: Path) -> None:
    _touch(tmp_path / "in", "a.tif", "b.tif", "c10.tif", "c2.tif")
    _touch(tmp_path / "tg", "a.png", "b.tif", "c10.tif", "c2.tif")
    pairs, how = pairs_from_files([tmp_path / "in"], [tmp_path / "tg"])
    assert how == "by file name"
    assert [Path(p.input).name for p in pairs] == ["a.tif", "b.tif", "c2.tif", "c10.tif"]
    assert all(Path(p.input).stem == Path(p.target).stem for p in pairs)

    inputs = _touch(tmp_path / "x", "f1_bf.tif", "f2_bf.tif")
    targets = _touch(tmp_path / "y", "f2_dapi.tif", "f1_dapi.tif")
    pairs, how = pairs_from_files(inputs, targets)
    assert how.startswith("in name order")
    assert [(Path(p.input).name, Path(p.target).name) for p in pairs] == [
        ("f1_bf.tif", "f1_dapi.tif"), ("f2_bf.tif", "f2_dapi.tif")]


def test_an_input_without_target_or_no_targets_is_named(tmp_path: Path) -> None:
    inputs = _touch(tmp_path / "in", "a.tif", "b.tif")
    targets = _touch(tmp_path / "tg", "a.tif")
    with pytest.raises(TrainingDataError, match="The input b.tif has no target with the same name"):
        pairs_from_files(inputs, targets)
    with pytest.raises(TrainingDataError, match=r"The target z.tif has no input .*\(1 inputs, 2 targets\)"):
        pairs_from_files(inputs[:1], [*targets, *_touch(tmp_path / "tg", "z.tif")])
    with pytest.raises(TrainingDataError, match="Add the fluorescence images"):
        pairs_from_files(inputs, [])


def test_the_cli_dispatcher_names_what_is_missing() -> None:
    with pytest.raises(TrainingDataError, match="Give both --input-dir and --target-dir"):
        pairs_from_sources(input_dir="a")
    with pytest.raises(TrainingDataError, match="need --target-channel"):
        pairs_from_sources(multichannel=["x.tif"])
    assert pairs_from_sources(required=False) == ()
    assert pairs_from_sources(input="a.tif", target="b.tif", target_channel=1)[0].target_channel == 1


def test_check_pairs_refuses_different_sizes_and_makes_thumbnails(tmp_path: Path) -> None:
    good = write_pair(tmp_path / "ok", "f", shape=(64, 64))
    checked = check_pairs([PairSpec(str(good[0]), str(good[1]))])
    assert checked[0].yx == (64, 64) and checked[0].describe_size() == "64×64 px"
    assert checked[0].input_thumb.shape == (64, 64)
    (bad_in,) = _touch(tmp_path / "bad", "in.tif", shape=(64, 64))
    (bad_tg,) = _touch(tmp_path / "bad", "tg.tif", shape=(48, 64))
    with pytest.raises(TrainingDataError, match="64×64 px but its target .* is 48×64 px"):
        check_pairs([PairSpec(str(bad_in), str(bad_tg))])
    assert thumbnail(np.zeros((3, 1000, 600), np.float32), side=256).shape == (250, 150)


def test_presets_budget_and_validation_region(tmp_path: Path) -> None:
    assert auto_val_region([(64, 64)]) == "32:64,32:64"
    assert auto_val_region([(1024, 2048), (2048, 2048)]) == "768:1024,1536:2048"
    spec = PairSpec("a.tif", "b.tif")
    config = config_from_choices([spec], tmp_path / "m", model_type="unet", preset="fast", minutes=5,
                                 val_region="32:64,32:64", smallest_shape=(64, 64))
    assert config.patch_shape == (32, 32) and config.max_minutes == 5 and config.max_steps == 2000
    assert config.model_id == "m" and config.val_every <= 200
    with pytest.raises(TrainingDataError, match="validation"):
        config_from_choices([spec], tmp_path / "m", model_type="unet", preset="fast", minutes=5)
    with pytest.raises(TrainingDataError, match="preset"):
        config_from_choices([spec], tmp_path / "m", model_type="unet", preset="huge", minutes=5, val_region="0:8,0:8")
    assert default_out_dir(tmp_path, "DNA (Hoechst) unet", now=0).name.startswith("dna-hoechst-unet-19")


def test_validation_events_carry_a_preview_of_the_first_crop(synthetic_pair: tuple[Path, Path], tmp_path: Path) -> None:
    config = tiny_config(synthetic_pair, tmp_path / "model", max_steps=10, val_every=5)
    events = [e for e in run_training(config) if isinstance(e, ValidationDone)]
    assert [e.step for e in events] == [5, 10]
    preview = events[-1].preview
    assert preview.input.shape == preview.target.shape == preview.prediction.shape == (64, 64)
    assert "preview" not in events[-1].metrics  # the JSON-ready metrics stay JSON-ready
