"""Z-stacks from every door (drop, File ▸ Open, Open folder, the command line) with the real backend
and the real ISL planes: the same question, natural order, fluorescence files not offered as inputs."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog

from labelfree_app.gui.files.file_list import LOADED
from labelfree_app.gui.files.open_plan import plan_opening
from labelfree_app.gui.settings import GuiSettings
from labelfree_app.io.channels import looks_fluorescent
from tests.gui.helpers import drop_files, wait_loaded

TRUTHS = ("depth_computation-MAXPROJECT_DAPI_CONFOCAL.png", "depth_computation-MAXPROJECT_MAP2_CONFOCAL.png",
          "depth_computation-MAXPROJECT_NFH_CONFOCAL.png")


@pytest.fixture
def isl_folder(shared_data) -> Path:
    folder = shared_data / "isl_condition_b"
    if len(list(folder.glob("z_depth-*_PHASE_CONTRAST.png"))) != 13 or not (folder / TRUTHS[0]).is_file():
        pytest.skip(f"the 13 ISL phase-contrast planes and their DAPI max projection are not in {folder}")
    return folder


def _planes(folder: Path) -> list[Path]:
    return [folder / f"z_depth-{z}_PHASE_CONTRAST.png" for z in range(13)]  # natural order


@pytest.fixture
def real_window(qtbot):
    from labelfree_app.gui.backend import CoreBackend
    from labelfree_app.gui.main_window import MainWindow

    window = MainWindow(CoreBackend(), GuiSettings())
    qtbot.addWidget(window)
    window.show()
    return window


def _asked(window, monkeypatch, answer: bool) -> list[int]:
    asked: list[int] = []
    monkeypatch.setattr(window, "ask_open_as_stack", lambda count: asked.append(count) or answer)
    return asked


def _trigger(window, text: str) -> None:
    next(a for a in window.findChildren(QAction) if a.text().replace("&", "") == text).trigger()


def _assert_one_isl_stack(qtbot, window) -> None:
    wait_loaded(qtbot, window, timeout=60000)
    assert len(window.file_list.files) == 1
    record = window.file_list.files[0]
    assert record.state == LOADED, record.reason
    assert record.extra["plane_paths"] == _planes(record.path.parent)
    assert record.image.data.shape == (1, 13, 1024, 1024)
    message = window.statusBar().currentMessage()
    assert message.startswith("Left out 3 files whose names say they are fluorescence") and TRUTHS[0] in message


def test_open_folder_asks_the_drop_question_and_leaves_the_fluorescence_files_out(qtbot, real_window, isl_folder,
                                                                                  monkeypatch):
    asked = _asked(real_window, monkeypatch, True)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(isl_folder))
    _trigger(real_window, "Open folder…")
    assert asked == [13]
    _assert_one_isl_stack(qtbot, real_window)


def test_open_files_with_every_file_of_the_folder_chosen_asks_the_same(qtbot, real_window, isl_folder, monkeypatch):
    chosen = [str(p) for p in isl_folder.iterdir() if p.suffix == ".png"]
    random.Random(7).shuffle(chosen)
    asked = _asked(real_window, monkeypatch, True)
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: (chosen, "Images"))
    _trigger(real_window, "Open…")
    assert asked == [13]
    _assert_one_isl_stack(qtbot, real_window)


def test_a_dropped_folder_is_the_same_door(qtbot, real_window, isl_folder, monkeypatch):
    asked = _asked(real_window, monkeypatch, True)
    drop_files(real_window, [isl_folder])
    assert asked == [13]
    _assert_one_isl_stack(qtbot, real_window)


def test_the_command_line_door_opens_a_plane_series_as_one_stack_without_asking(qtbot, real_window, isl_folder,
                                                                                monkeypatch):
    asked = _asked(real_window, monkeypatch, False)
    real_window.open_inputs(sorted(isl_folder.iterdir()), ask=False)  # `labelfree-gui FILES --screenshot`
    assert asked == []
    _assert_one_isl_stack(qtbot, real_window)


def test_answering_no_opens_the_planes_one_by_one_in_natural_order(qtbot, real_window, isl_folder, monkeypatch):
    asked = _asked(real_window, monkeypatch, False)
    real_window.open_inputs([isl_folder])
    assert asked == [13]
    assert [r.path for r in real_window.file_list.files] == _planes(isl_folder)  # 0, 1, 2, …, 10, 11, 12
    assert real_window.file_list.current() is real_window.file_list.files[0]
    wait_loaded(qtbot, real_window, count=13, timeout=60000)


def test_a_fluorescence_file_opened_by_itself_opens_with_a_word(qtbot, real_window, isl_folder):
    real_window.open_inputs([isl_folder / TRUTHS[0]])
    assert [r.path.name for r in real_window.file_list.files] == [TRUTHS[0]]
    assert "the name says fluorescence" in real_window.statusBar().currentMessage()


def test_the_plan_sorts_naturally_and_finds_a_series_among_other_files(tmp_path):
    import imagecodecs

    for z in (0, 1, 2, 10, 11):
        (tmp_path / f"field_z{z}_BF.png").write_bytes(imagecodecs.png_encode(np.zeros((4, 6), np.uint16)))
    for name in ("other.png", "field_DAPI.png", "cells_target.png"):
        (tmp_path / name).write_bytes(imagecodecs.png_encode(np.zeros((4, 6), np.uint16)))
    plan = plan_opening(sorted(tmp_path.iterdir()))
    assert [[p.name for p in stack] for stack in plan.stacks] == [
        ["field_z0_BF.png", "field_z1_BF.png", "field_z2_BF.png", "field_z10_BF.png", "field_z11_BF.png"]]
    assert [p.name for p in plan.singles] == ["other.png"]
    assert [p.name for p in plan.left_out] == ["cells_target.png", "field_DAPI.png"]
    assert plan.note().startswith("Left out 2 files whose names say they are fluorescence")


def test_names_that_say_fluorescence_and_names_that_do_not():
    for name in (*TRUTHS, "a_dapi.tif", "C1-Hoechst.tif", "img_GFP.tif", "x_Cy5.tif", "field01_target.tif"):
        assert looks_fluorescent(name), name
    for name in ("z_depth-0_PHASE_CONTRAST.png", "demo_phase_neurons.ome.tif", "cells_2d.tif", "BF_and_DAPI.tif",
                 "trust_map.tif", "plane_00.tif"):
        assert not looks_fluorescent(name), name
