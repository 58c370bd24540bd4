"""Paired datasets: the four ways to name pairs, the checks, the normalization."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from labelfree_app.errors import TrainingDataError
from labelfree_app.training.config import PairSpec
from labelfree_app.training.datasets import (check_pairs_exist, load_pair, pairs_from_csv, pairs_from_dirs, read_target_zyx,
                                             pairs_from_multichannel, plane_paths)

from .conftest import smooth_texture, write_pair


def test_csv_pairs_resolve_relative_paths_and_channels(tmp_path: Path) -> None:
    write_pair(tmp_path, "a", seed=1)
    write_pair(tmp_path, "b", seed=2)
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("input,target,target_channel\ninput/a.tif,target/a.tif,\ninput/b.tif,target/b.tif,0\n")
    pairs = pairs_from_csv(csv_path)
    assert [Path(p.input).name for p in pairs] == ["a.tif", "b.tif"]
    assert Path(pairs[0].input).is_absolute() and Path(pairs[0].input).parent == tmp_path / "input"
    # as the CLI and the app parse it: a name first, an index when no channel has that name
    assert pairs[0].target_channel is None and pairs[1].target_channel == "0"
    assert np.array_equal(read_target_zyx(pairs[1]), read_target_zyx(PairSpec(pairs[1].input, pairs[1].target)))


def test_csv_accepts_fnet_column_names(tmp_path: Path) -> None:
    write_pair(tmp_path, "a")
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("path_signal,path_target\ninput/a.tif,target/a.tif\n")
    (pair,) = pairs_from_csv(csv_path)
    assert Path(pair.target).name == "a.tif"


def test_csv_without_target_column_names_the_file(tmp_path: Path) -> None:
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("input,other\na.tif,b.tif\n")
    with pytest.raises(TrainingDataError, match="pairs.csv.*'target'"):
        pairs_from_csv(csv_path)


def test_folders_pair_files_by_name_across_extensions(tmp_path: Path) -> None:
    write_pair(tmp_path, "field2", seed=1)
    write_pair(tmp_path, "field10", seed=2)
    (tmp_path / "target" / "field2.tif").rename(tmp_path / "target" / "field2.tiff")
    pairs = pairs_from_dirs(tmp_path / "input", tmp_path / "target")
    assert [(Path(p.input).name, Path(p.target).name) for p in pairs] == [
        ("field2.tif", "field2.tiff"), ("field10.tif", "field10.tif")]


def test_folders_with_an_unmatched_input_name_it(tmp_path: Path) -> None:
    write_pair(tmp_path, "a")
    tifffile.imwrite(tmp_path / "input" / "lonely.tif", smooth_texture((32, 32), 0))
    with pytest.raises(TrainingDataError, match="lonely.tif has no target"):
        pairs_from_dirs(tmp_path / "input", tmp_path / "target")


def test_loaded_pair_is_normalized_over_the_whole_image(tmp_path: Path) -> None:
    in_path, tg_path = write_pair(tmp_path, "a", shape=(64, 80))
    pair = load_pair(PairSpec(str(in_path), str(tg_path)), dims=2, input_normalization="zscore")
    assert pair.input.shape == (1, 64, 80) and pair.target.shape == (1, 64, 80)
    assert pair.input.dtype == np.float32 and not pair.z_as_channels
    for array in (pair.input, pair.target):
        assert abs(float(array.mean())) < 1e-4 and abs(float(array.std()) - 1) < 1e-3
    percentile = load_pair(PairSpec(str(in_path), str(tg_path)), dims=2, input_normalization="percentile")
    assert np.percentile(percentile.input, 1) == pytest.approx(0, abs=0.02)
    assert np.percentile(percentile.input, 99.8) == pytest.approx(1, abs=0.02)


def test_multichannel_files_give_input_and_target_channels(tmp_path: Path) -> None:
    source = smooth_texture((48, 48), 5)
    both = np.stack([source, (source // 2).astype(np.uint16)])
    path = tmp_path / "both.tif"
    tifffile.imwrite(path, both, imagej=True, metadata={"axes": "CYX"})
    (spec,) = pairs_from_multichannel([path], input_channel=0, target_channel=1)
    pair = load_pair(spec, dims=2, input_normalization="zscore")
    assert pair.input.shape == (1, 48, 48)
    np.testing.assert_allclose(pair.input, pair.target, atol=1e-3)  # half the input, z-scored alike


def test_multichannel_target_without_a_channel_choice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "both.tif"
    tifffile.imwrite(path, np.stack([smooth_texture((32, 32), 1)] * 2), imagej=True, metadata={"axes": "CYX"})
    with pytest.raises(TrainingDataError, match="target channel"):
        load_pair(PairSpec(str(path), str(path), input_channel=0), dims=2, input_normalization="zscore")


def test_plane_series_input_becomes_channels_in_natural_z_order(tmp_path: Path) -> None:
    for z in range(12):  # z_depth-10 must come after z_depth-9, not after z_depth-1
        plane = np.full((40, 40), 100 * z, dtype=np.uint16)
        plane[0, 0] = 1  # not constant
        PILImage.fromarray(plane).save(tmp_path / f"z_depth-{z}_PHASE.png")
    tifffile.imwrite(tmp_path / "target.tif", smooth_texture((40, 40), 2))
    spec = PairSpec(str(tmp_path / "z_depth-*_PHASE.png"), str(tmp_path / "target.tif"))
    assert spec.is_plane_series
    assert [p.name for p in plane_paths(spec)][9:11] == ["z_depth-9_PHASE.png", "z_depth-10_PHASE.png"]
    pair = load_pair(spec, dims=2, input_normalization="zscore")
    assert pair.input.shape == (12, 40, 40) and pair.z_as_channels
    assert np.all(np.diff(pair.input[:, 5, 5]) > 0)  # one normalization for the whole stack


def test_different_yx_shapes_name_both_files(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "in.tif", smooth_texture((64, 64), 0))
    tifffile.imwrite(tmp_path / "tg.tif", smooth_texture((64, 60), 0))
    with pytest.raises(TrainingDataError, match=r"in\.tif.*64×64.*tg\.tif.*64×60"):
        load_pair(PairSpec(str(tmp_path / "in.tif"), str(tmp_path / "tg.tif")), dims=2, input_normalization="zscore")


def test_missing_file_is_named_before_any_reading(tmp_path: Path) -> None:
    in_path, _ = write_pair(tmp_path, "a")
    pairs = [PairSpec(str(in_path), str(tmp_path / "target" / "a.tif")),
             PairSpec(str(in_path), str(tmp_path / "nowhere.tif"))]
    with pytest.raises(TrainingDataError, match="nowhere.tif does not exist"):
        check_pairs_exist(pairs)
    with pytest.raises(TrainingDataError, match="No plane files match"):
        check_pairs_exist([PairSpec(str(tmp_path / "z_*.png"), str(in_path))])


def test_a_2d_model_refuses_a_z_stack_target(tmp_path: Path) -> None:
    stack = np.stack([smooth_texture((32, 32), k) for k in range(3)])
    for name in ("in.tif", "tg.tif"):
        tifffile.imwrite(tmp_path / name, stack, imagej=True, metadata={"axes": "ZYX"})
    spec = PairSpec(str(tmp_path / "in.tif"), str(tmp_path / "tg.tif"))
    with pytest.raises(TrainingDataError, match="3-plane stack.*3D model"):
        load_pair(spec, dims=2, input_normalization="zscore")
    pair = load_pair(spec, dims=3, input_normalization="zscore")
    assert pair.input.shape == (1, 3, 32, 32) and pair.target.shape == (1, 3, 32, 32)


def test_isl_z_stack_and_dapi_target_load_as_a_13_channel_pair(shared_data: Path) -> None:
    folder = shared_data / "isl_condition_b"
    spec = PairSpec(str(folder / "z_depth-*_PHASE_CONTRAST.png"),
                    str(folder / "depth_computation-MAXPROJECT_DAPI_CONFOCAL.png"))
    pair = load_pair(spec, dims=2, input_normalization="zscore")
    assert pair.input.shape == (13, 1024, 1024) and pair.target.shape == (1, 1024, 1024)
    assert pair.z_as_channels
    assert Path(plane_paths(spec)[12]).name == "z_depth-12_PHASE_CONTRAST.png"


def test_csv_input_cell_may_be_a_glob_of_planes(tmp_path: Path) -> None:
    (tmp_path / "planes").mkdir()
    for z in range(3):
        tifffile.imwrite(tmp_path / "planes" / f"z{z}.tif", smooth_texture((24, 24), z))
    tifffile.imwrite(tmp_path / "target.tif", smooth_texture((24, 24), 9))
    (tmp_path / "pairs.csv").write_text("input,target\nplanes/z*.tif,target.tif\n")
    (spec,) = pairs_from_csv(tmp_path / "pairs.csv")
    assert spec.is_plane_series and len(plane_paths(spec)) == 3
    assert load_pair(spec, dims=2, input_normalization="zscore").input.shape == (3, 24, 24)
