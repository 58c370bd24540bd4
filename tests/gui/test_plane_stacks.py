"""Per-plane files opened as one z-stack: the File menu action, the drop question, odd planes."""

from __future__ import annotations

import random
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog

from labelfree_app.gui.files import plane_series
from labelfree_app.gui.files.file_list import DONE, FAILED, LOADED
from tests.gui.fakes import write_tiff
from tests.gui.helpers import drop_files, run_and_wait, wait_loaded


def write_planes(folder: Path, count: int, shape: tuple[int, int] = (8, 12), odd: dict[int, tuple[int, int]] | None = None) -> list[Path]:
    """``z_depth-{z}_PHASE_CONTRAST.png`` files whose pixels all equal 100 * z + 7 (uint16)."""
    folder.mkdir(exist_ok=True)
    paths = []
    for z in range(count):
        plane = np.full((odd or {}).get(z, shape), 100 * z + 7, dtype=np.uint16)
        path = folder / f"z_depth-{z}_PHASE_CONTRAST.png"
        path.write_bytes(imagecodecs.png_encode(plane))
        paths.append(path)
    return paths


def choose_in_dialog(monkeypatch, paths: list[Path]) -> None:
    shuffled = [str(p) for p in paths]
    random.Random(3).shuffle(shuffled)
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: (shuffled, "Images"))


def trigger_stack_action(window) -> None:
    action = next(a for a in window.findChildren(QAction) if a.text().replace("&", "") == "Open planes as z-stack…")
    action.trigger()


def test_open_planes_as_z_stack_adds_one_entry_with_a_plane_per_file_in_natural_order(qtbot, window, tmp_path, monkeypatch):
    paths = write_planes(tmp_path / "planes", 11)  # 11 files: z_depth-10 must come after z_depth-9
    choose_in_dialog(monkeypatch, paths)
    trigger_stack_action(window)
    wait_loaded(qtbot, window)
    assert len(window.file_list.files) == 1
    record = window.file_list.files[0]
    assert record.state == LOADED, record.reason
    assert record.image.data.shape == (1, 11, 8, 12)
    assert [int(record.image.data[0, z, 0, 0]) for z in range(11)] == [100 * z + 7 for z in range(11)]
    assert record.name == "z_depth-*_PHASE_CONTRAST (11 planes)"
    assert window.file_list.item(0).text().startswith("z_depth-*_PHASE_CONTRAST (11 planes)")
    assert window.panels.z_slider.maximum() == 10
    assert window.panels.input_panel.plane.shape == (8, 12)


def test_opening_the_same_planes_again_keeps_one_entry(qtbot, window, tmp_path, monkeypatch):
    paths = write_planes(tmp_path / "planes", 4)
    choose_in_dialog(monkeypatch, paths)
    trigger_stack_action(window)
    wait_loaded(qtbot, window)
    first = window.file_list.files[0]
    trigger_stack_action(window)
    assert window.file_list.files == [first] and first.state == LOADED


def test_a_plane_stack_runs_and_exports_under_a_file_name_without_wildcards(qtbot, window, tmp_path, monkeypatch):
    paths = write_planes(tmp_path / "planes", 5)
    choose_in_dialog(monkeypatch, paths)
    trigger_stack_action(window)
    wait_loaded(qtbot, window)
    assert run_and_wait(qtbot, window) == DONE
    record = window.file_list.files[0]
    assert record.result.prediction.shape == (1, 5, 8, 12)
    out = tmp_path / "out"
    out.mkdir()
    with qtbot.waitSignal(window.exported, timeout=10000) as blocker:
        assert window.results.export_current(out)
    names = [Path(p).name for p in blocker.args[0]]
    # named as `labelfree predict --z-stack` names it: after the first plane, no wildcard
    assert names and all(n.startswith("z_depth-0_PHASE_CONTRAST__") and "*" not in n for n in names)
    assert all(Path(p).parent == out for p in blocker.args[0])


def test_dropping_a_plane_series_asks_once_and_yes_opens_one_stack(qtbot, window, tmp_path, monkeypatch):
    paths = write_planes(tmp_path / "planes", 6)
    asked: list[int] = []
    monkeypatch.setattr(window, "ask_open_as_stack", lambda count: asked.append(count) or True)
    drop_files(window, paths)
    wait_loaded(qtbot, window)
    assert asked == [6]
    assert len(window.file_list.files) == 1
    assert window.file_list.files[0].image.data.shape == (1, 6, 8, 12)


def test_answering_no_opens_the_dropped_planes_as_separate_files(qtbot, window, tmp_path, monkeypatch):
    folder = tmp_path / "tiff_planes"
    folder.mkdir()
    paths = [write_tiff(folder / f"plane_{z:02d}.tif", np.full((1, 1, 8, 8), z, np.float32), ["bright-field"]) for z in range(3)]
    asked: list[int] = []
    monkeypatch.setattr(window, "ask_open_as_stack", lambda count: asked.append(count) or False)
    drop_files(window, paths)
    wait_loaded(qtbot, window, count=3)
    assert asked == [3]
    assert [r.path for r in window.file_list.files] == paths
    assert all(r.state == LOADED and r.image.data.shape == (1, 1, 8, 8) for r in window.file_list.files)


def test_dropping_unrelated_files_does_not_ask(qtbot, window, tiff_2d, tiff_3d_two_channels, monkeypatch):
    def never(count: int) -> bool:
        raise AssertionError("asked about unrelated files")

    monkeypatch.setattr(window, "ask_open_as_stack", never)
    drop_files(window, [tiff_2d, tiff_3d_two_channels])
    wait_loaded(qtbot, window, count=2)
    assert [r.path for r in window.file_list.files] == [tiff_2d, tiff_3d_two_channels]


def test_the_heuristic_accepts_a_plane_series_and_rejects_look_alikes(tmp_path):
    series = write_planes(tmp_path / "series", 5)
    assert plane_series.looks_like_plane_series(series)
    assert plane_series.looks_like_plane_series(list(reversed(series)))
    assert not plane_series.looks_like_plane_series(series[:1])
    odd = write_planes(tmp_path / "odd", 5, odd={2: (8, 13)})
    assert not plane_series.looks_like_plane_series(odd)
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    names = []
    for name in ("cells.png", "nuclei.png", "membrane.png"):
        (unrelated / name).write_bytes(imagecodecs.png_encode(np.zeros((8, 12), np.uint16)))
        names.append(unrelated / name)
    assert not plane_series.looks_like_plane_series(names)
    two_numbers = tmp_path / "two_numbers"
    two_numbers.mkdir()
    varying_twice = []
    for t, z in ((1, 1), (2, 2), (3, 3)):
        path = two_numbers / f"t{t}_z{z}.png"
        path.write_bytes(imagecodecs.png_encode(np.zeros((8, 12), np.uint16)))
        varying_twice.append(path)
    assert not plane_series.looks_like_plane_series(varying_twice)
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    multi_plane = [write_tiff(stacks / f"stack_{i}.tif", np.zeros((1, 5, 8, 8), np.float32), ["bf"]) for i in range(3)]
    assert not plane_series.looks_like_plane_series(multi_plane)
    colour = tmp_path / "colour"
    colour.mkdir()
    rgb_planes = []
    for z in range(3):
        path = colour / f"rgb_{z}.png"
        path.write_bytes(imagecodecs.png_encode(np.zeros((8, 12, 3), np.uint8)))
        rgb_planes.append(path)
    assert not plane_series.looks_like_plane_series(rgb_planes)


def test_a_series_with_one_odd_shaped_plane_shows_the_one_sentence_error(qtbot, window, tmp_path, monkeypatch):
    paths = write_planes(tmp_path / "planes", 5, odd={3: (16, 12)})
    choose_in_dialog(monkeypatch, paths)
    trigger_stack_action(window)
    wait_loaded(qtbot, window)
    record = window.file_list.files[0]
    assert record.state == FAILED
    message = window.statusBar().currentMessage()
    assert message == record.reason
    assert "z_depth-3_PHASE_CONTRAST.png" in message and "same size" in message
    assert message.endswith(".") and ". " not in message  # one sentence
    assert "could not be read" in window.panels.input_panel.message


def test_the_bundled_isl_planes_drop_as_one_13_plane_stack_without_the_ground_truth(qtbot, window, shared_data, monkeypatch):
    folder = shared_data / "isl_condition_b"
    planes = sorted(folder.glob("z_depth-*_PHASE_CONTRAST.png"))
    if len(planes) != 13:
        pytest.skip(f"expected 13 phase-contrast planes in {folder}")
    truth = folder / "depth_computation-MAXPROJECT_DAPI_CONFOCAL.png"
    assert not plane_series.looks_like_plane_series([*planes, truth])
    monkeypatch.setattr(window, "ask_open_as_stack", lambda count: count == 13)
    drop_files(window, planes)
    wait_loaded(qtbot, window, timeout=20000)
    record = window.file_list.files[0]
    assert len(window.file_list.files) == 1 and record.state == LOADED, record.reason
    assert record.name == "z_depth-*_PHASE_CONTRAST (13 planes)"
    assert record.image.data.shape[:2] == (1, 13)


def test_the_drop_question_names_the_file_count_and_yes_means_one_stack(qtbot, window, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    asked: list[str] = []

    def answer(parent, title, text, buttons, default):
        asked.append(text)
        return QMessageBox.StandardButton.No if "2 files" in text else QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", answer)
    assert window.ask_open_as_stack(13) is True
    assert window.ask_open_as_stack(2) is False
    assert asked == ["Open these 13 files as one z-stack?", "Open these 2 files as one z-stack?"]
