"""The window with the real backend, the real demo and tiny real models (issue 28 items 4, 6-9): the batch
dialog's settings and moving progress, one overlay state, an export that never writes into the batch's
folder nor replaces files unasked, the target channel matched by a name part, and nothing of the previous
file or run left on screen."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer

from labelfree_app.gui.settings import GuiSettings
from labelfree_app.paths import demo_image
from tests.gui.helpers import run_and_wait, select_model, wait_loaded

pytest.importorskip("torch")

LIST_TIMEOUT_MS = 60000  # listing the bundled models reads every manifest; slow on a loaded 2-core machine
UNET, DIFFUSION = "tiny-unet", "tiny-diffusion"


@pytest.fixture
def demo() -> Path:
    path = demo_image()
    if not path.is_file():
        pytest.skip(f"the demo image is not at {path}")
    return path


@pytest.fixture
def window(qtbot, tmp_path):
    """The real window (``CoreBackend``) with a tiny U-Net (offers TTA) and a tiny diffusion model installed."""
    from labelfree_app.gui.backend import CoreBackend
    from labelfree_app.gui.main_window import MainWindow
    from labelfree_app.models.registry import ModelRegistry
    from tests.factories import make_diffusion_package, make_unet_package

    registry = ModelRegistry()
    registry.install(make_unet_package(tmp_path / "packages", model_id=UNET, tta=True).path, smoke_test=False)
    registry.install(make_diffusion_package(tmp_path / "packages", model_id=DIFFUSION).path, smoke_test=False)
    win = MainWindow(CoreBackend(), GuiSettings())
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: any(m.id == DIFFUSION for m in win.models), timeout=LIST_TIMEOUT_MS)
    yield win
    if win.runner.is_running():
        win.runner.cancel()
        win.runner.wait(10000)


def _open(qtbot, window, paths: list[Path]) -> None:
    window.open_paths(paths)
    wait_loaded(qtbot, window, count=len(paths), timeout=30000)


def _batch_dialog(window):
    from labelfree_app.gui.batch.dialog import BatchDialog

    window.menus.batch_export_action.trigger()
    return [d for d in window.dialogs if isinstance(d, BatchDialog)][-1]


def _title(panel) -> str:
    """The title a panel shows now (``ImagePanel.title`` is its fixed name)."""
    return str(panel.title_label.text)


def _finish(qtbot, dialog, timeout: int = 120000):
    with qtbot.waitSignal(dialog.batchFinished, timeout=timeout) as blocker:
        assert dialog.start()
    qtbot.waitUntil(lambda: not dialog.is_running(), timeout=10000)
    return blocker.args[0]


# --- item 4 ---------------------------------------------------------------------------------------------
def test_the_batch_dialog_shows_the_window_settings_runs_with_what_it_shows_and_its_eta_moves_within_a_file(
        qtbot, window, demo, tmp_path):
    _open(qtbot, window, [demo])
    select_model(window, UNET)  # a U-Net in the window: its Run panel still holds diffusion values
    controls = window.controls
    controls.samples_spin.setValue(3)
    controls.steps_spin.setValue(4)
    controls.tta_box.setChecked(True)
    dialog = _batch_dialog(window)
    box = dialog.settings_box
    assert (box.samples_spin.value(), box.steps_spin.value(), box.tta_box.isChecked()) == (3, 4, True)
    assert box.isVisible() and box.samples_spin.isEnabled() is False  # only a U-Net ticked: sampling is off
    dialog.set_models_checked([DIFFUSION])
    assert box.samples_spin.isEnabled() and not box.tta_box.isEnabled()
    box.samples_spin.setValue(2)  # edited in the dialog: this is what runs
    box.steps_spin.setValue(12)
    dialog.out_edit.setText(str(tmp_path / "batch"))

    seen: list[tuple[int, str, str, int]] = []  # (files finished, status line, ETA, step total) every 50 ms
    sampler = QTimer()
    sampler.setInterval(50)
    sampler.timeout.connect(lambda: seen.append((dialog.overall_bar.value(), dialog.summary_label.text(),
                                                 dialog.eta_label.text(), dialog.job_bar.maximum())))
    sampler.start()
    done = _finish(qtbot, dialog)
    sampler.stop()

    assert done is not None and done.counts.get("done") == 1, dialog.summary_label.text()
    report = json.loads((tmp_path / "batch" / "batch_report.json").read_text())
    settings = report["settings"]
    assert (settings["samples"], settings["steps"], settings["tta"]) == (2, 12, True)
    during = [s for s in seen if s[0] == 0]  # while the one (long) file runs
    assert any(total == 12 for *_, total in during)  # per-step progress of the steps the dialog shows
    statuses = {status for _, status, _, _ in during}
    assert "Starting… (loading models)" not in statuses
    assert any(status.startswith("Sampling: ") for status in statuses), statuses
    etas = [eta for _, _, eta, _ in during if eta.startswith("ETA: ") and "estimating" not in eta]
    assert len(set(etas)) >= 2, etas  # an ETA before the first file ends, and it moves


# --- item 6 ---------------------------------------------------------------------------------------------
def test_the_overlay_is_one_state_after_switching_files_and_the_first_ctrl_l_shows_it(qtbot, window, demo,
                                                                                      tmp_path):
    other = tmp_path / "second.ome.tif"
    shutil.copyfile(demo, other)
    _open(qtbot, window, [demo, other])
    first, second = window.file_list.files
    window.file_list.select(first)
    select_model(window, UNET)
    assert run_and_wait(qtbot, window, timeout=120000) == "done"
    overlay, panels = window.menus.overlay_action, window.panels
    overlay.trigger()  # Ctrl+L
    assert panels.overlay_active and panels.overlay_box.isChecked() and overlay.isChecked()

    def states() -> tuple[bool, bool, bool]:
        return panels.overlay_active, panels.overlay_box.isChecked(), overlay.isChecked()

    window.file_list.select(second)  # no result: no overlay, and every control says so
    assert states() == (False, False, False)
    overlay.trigger()  # asked for where there is nothing to overlay: refused, and the action says so
    assert states() == (False, False, False)
    window.file_list.select(first)
    assert states() == (False, False, False)
    overlay.trigger()  # the first Ctrl+L shows it
    assert states() == (True, True, True) and panels.prediction_panel.shows_rgb
    panels.overlay_box.setChecked(False)
    assert states() == (False, False, False) and not panels.prediction_panel.shows_rgb


# --- item 7 ---------------------------------------------------------------------------------------------
def test_export_after_a_batch_goes_to_the_export_folder_and_asks_before_replacing(qtbot, window, demo, tmp_path,
                                                                                  monkeypatch):
    from labelfree_app.gui.predict import results

    exports, batch_out = tmp_path / "exports", tmp_path / "batch"
    exports.mkdir()
    window.settings.set("export_folder", str(exports))  # picked by the user earlier
    _open(qtbot, window, [demo])
    select_model(window, UNET)
    assert run_and_wait(qtbot, window, timeout=120000) == "done"
    dialog = _batch_dialog(window)
    dialog.out_edit.setText(str(batch_out))
    assert _finish(qtbot, dialog).counts.get("done") == 1
    dialog.close()
    batch_files = {p.name: p.read_bytes() for p in batch_out.iterdir() if p.is_file()}
    assert window.settings.get("export_folder") == str(exports)  # the batch never moves Export's folder
    assert window.settings.get("batch_folder") == str(batch_out)

    asked: list[list[Path]] = []
    answers: list[str] = []
    monkeypatch.setattr(window.results, "ask_replace",
                        lambda folder, taken: asked.append(taken) or answers.pop(0))

    def export() -> list[Path]:
        with qtbot.waitSignal(window.exported, timeout=60000) as blocker:
            assert window.results.export_current()
        return blocker.args[0]

    first = export()
    assert {p.parent for p in first} == {exports} and not asked  # nothing there yet: no question
    stamps = {p: p.read_bytes() for p in first}
    answers.append(results.CANCEL)
    assert not window.results.export_current()  # same names again: asked, and Cancel writes nothing
    assert asked and {p.name for p in asked[-1]} == {p.name for p in first}
    answers.append(results.NUMBER)
    numbered = export()
    assert all(p.name.startswith("demo_phase_neurons-2__") for p in numbered), [p.name for p in numbered]
    assert all(p.read_bytes() == data for p, data in stamps.items())  # the first export untouched
    answers.append(results.REPLACE)
    assert {p.name for p in export()} == {p.name for p in first}
    assert {p.name: p.read_bytes() for p in batch_out.iterdir() if p.is_file()} == batch_files


# --- item 8 ---------------------------------------------------------------------------------------------
def test_score_against_dapi_finds_the_demos_dna_channel_as_compare_does(qtbot, window, demo, tmp_path):
    from labelfree_app.gui.viewer.compare import matching_channel
    from labelfree_app.io import channels

    assert matching_channel is channels.matching_channel  # one function, Compare's, not a copy
    _open(qtbot, window, [demo])
    select_model(window, UNET)
    dialog = _batch_dialog(window)
    dialog.out_edit.setText(str(tmp_path / "batch"))
    dialog.target_edit.setText("DAPI")  # the placeholder's example; the demo's channel is "DNA (DAPI, real stain)"
    done = _finish(qtbot, dialog)
    row = done.rows[0]
    assert row.status == "done" and row.pearson_r is not None, row.note
    assert dialog.table.item(0, 4).text() == f"{row.pearson_r:.3f}"


# --- item 9 ---------------------------------------------------------------------------------------------
def test_nothing_of_the_previous_file_or_run_stays_on_screen(qtbot, window, demo, tmp_path):
    other = tmp_path / "second.ome.tif"
    shutil.copyfile(demo, other)
    _open(qtbot, window, [demo, other])
    first, second = window.file_list.files
    window.file_list.select(first)
    select_model(window, UNET)
    window.controls.tta_box.setChecked(True)
    assert run_and_wait(qtbot, window, timeout=120000) == "done"
    controls, panels = window.controls, window.panels
    assert _title(panels.variance_panel) == "Variance (test-time augmentation)"
    assert controls.eta_label.text().startswith("Done after")
    panels.probe(100, 100)
    assert "Prediction" in window.hover_label.text()

    window.file_list.select(second)  # never run
    assert controls.progress_bar.text() == "" and controls.eta_label.text() == ""
    assert window.windowTitle() == "LabelFree — second.ome.tif"
    assert window.hover_label.text() == ""
    assert "second.ome.tif" in window.statusBar().currentMessage()
    assert "demo_phase_neurons" not in window.statusBar().currentMessage()

    window.file_list.select(first)  # its own last run, not the words of a run just finished
    assert controls.progress_bar.text() == "done" and controls.eta_label.text().startswith("Predicted in")
    select_model(window, DIFFUSION)
    controls.samples_spin.setValue(2)
    controls.steps_spin.setValue(6)
    during: list[tuple[bool, str, str]] = []
    with qtbot.waitSignal(window.runner.finished, timeout=120000):
        assert window.run_current()
        during.append((panels.prediction_panel.plane is not None, _title(panels.variance_panel),
                       _title(panels.prediction_panel)))
        qtbot.waitUntil(lambda: _title(panels.denoising_panel).startswith("Denoising — sample"), timeout=60000)
        during.append((panels.prediction_panel.plane is not None, _title(panels.variance_panel),
                       _title(panels.prediction_panel)))
        window.file_list.select(second)
        window.file_list.select(first)  # shown again mid-run: still not the old result
        during.append((panels.prediction_panel.plane is not None, _title(panels.variance_panel),
                       _title(panels.prediction_panel)))
    window.runner.wait(5000)
    assert during == [(False, "Variance", "Prediction")] * 3, during
    assert _title(panels.variance_panel) == "Variance over 2 samples"


def test_the_batch_dialog_carries_the_window_scale_and_the_batch_runs_with_it(qtbot, window, demo, tmp_path):
    _open(qtbot, window, [demo])
    select_model(window, UNET)
    window.controls.scale_box.pixel_spin.setValue(0.62)
    window.controls.scale_box.search_box.setChecked(True)
    dialog = _batch_dialog(window)
    box = dialog.settings_box.scale_box
    assert box.values() == {"scale": "search", "pixel_size_um": 0.62}  # shown as the window has it
    box.search_box.setChecked(False)  # edited in the dialog: this is what runs
    dialog.set_models_checked([UNET])
    dialog.out_edit.setText(str(tmp_path / "batch"))
    done = _finish(qtbot, dialog)
    assert done is not None and done.counts.get("done") == 1, dialog.summary_label.text()
    settings = json.loads((tmp_path / "batch" / "batch_report.json").read_text())["settings"]
    assert (settings["scale"], settings["pixel_size_um"]) == ("pixel-size", 0.62)
