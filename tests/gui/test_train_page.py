"""Models ▸ Train a model: real (tiny) trainings from the Train page, offscreen.

Each training is a tiny U-Net on 64×64 synthetic cells, a few dozen steps, so the file runs in
seconds. They drive the same ``run_training`` loop as ``labelfree train``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PySide6.QtCore import Qt

from labelfree_app.gui.backend import CoreBackend
from labelfree_app.gui.train.page import LIVE, RESULT, SETUP, TrainDialog
from tests.synthetic_cells import render_cells
from tests.factories import write_field
from tests.gui.helpers import drop_files, wait_loaded


def tiny(max_steps: int, val_every: int = 10) -> dict:
    from labelfree_app.training.config import UNetSettings

    return {"unet": UNetSettings(depth=2, base_channels=8), "patch_shape": (32, 32), "batch_size": 4,
            "max_steps": max_steps, "val_every": val_every, "checkpoint_every": 1000, "warmup_steps": 3}


def write_pairs(root: Path, names: tuple[str, ...] = ("field",), shape: tuple[int, int] = (64, 64),
                target_shape: tuple[int, int] | None = None) -> tuple[Path, Path]:
    """bf/<name>.tif and dapi/<name>.tif: synthetic bright-field and its nuclei (float32)."""
    for folder in ("bf", "dapi"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(names):
        cells = render_cells(shape, seed=seed, n_cells=4)
        nuclei = cells.nuclei if target_shape is None else render_cells(target_shape, seed=seed).nuclei
        tifffile.imwrite(root / "bf" / f"{name}.tif", cells.brightfield.astype(np.float32))
        tifffile.imwrite(root / "dapi" / f"{name}.tif", nuclei.astype(np.float32))
    return root / "bf", root / "dapi"


@pytest.fixture
def dialog(qtbot):
    page = TrainDialog(CoreBackend())
    page.confirm_close = lambda question: True  # a test that fails mid-training must not hang on the question
    qtbot.addWidget(page)
    page.show()
    yield page
    page.shut_down()


def add_pairs(qtbot, dialog: TrainDialog, inputs: list[Path], targets: list[Path], *, ok: bool = True) -> None:
    box = dialog.setup.pairs_box
    drop_files(box.input_list, inputs)
    drop_files(box.target_list, targets)
    qtbot.waitUntil(lambda: not box.checking, timeout=30000)
    assert bool(box.pairs) == ok, box.problem


def start_and_wait_steps(qtbot, dialog: TrainDialog, steps: int) -> None:
    assert dialog.start()
    qtbot.waitUntil(lambda: dialog.live.step >= steps, timeout=60000)


def test_a_short_training_from_the_page_gives_a_model_the_registry_lists_and_runs(qtbot, tmp_path):
    from labelfree_app.gui.main_window import MainWindow
    from labelfree_app.gui.settings import GuiSettings
    from labelfree_app.models.registry import ModelRegistry

    bf, dapi = write_pairs(tmp_path)
    window = MainWindow(CoreBackend(), GuiSettings())
    qtbot.addWidget(window)
    window.show()
    window.open_paths([bf / "field.tif"])
    wait_loaded(qtbot, window)
    window.menus.train_action.trigger()
    dialog = next(d for d in window.dialogs if isinstance(d, TrainDialog))
    qtbot.addWidget(dialog)

    add_pairs(qtbot, dialog, [bf], [dapi])
    assert dialog.setup.start_button.isEnabled()
    assert dialog.setup.pairs_box.pair_table.item(0, 2).text() == "64×64 px"
    assert all(dialog.setup.pairs_box.preview.has_image(0, col) for col in range(3))
    dialog.setup.target_edit.setText("nuclei")
    dialog.setup.name_edit.setText("gui test model")
    dialog.setup.config_changes = tiny(max_steps=40)

    started = time.perf_counter()
    with qtbot.waitSignal(dialog.trainingFinished, timeout=120000) as finished:
        qtbot.mouseClick(dialog.setup.start_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: dialog.pages.currentIndex() == LIVE, timeout=10000)
    wall = time.perf_counter() - started
    event = finished.args[0]
    print(f"\n{event.steps} steps in {event.seconds:.2f} s of training ({event.steps / event.seconds:.0f} steps/s), "
          f"{wall:.1f} s from Start to the model card")

    assert event.steps == 40 and event.stop_reason == "max_steps"
    assert dialog.live.steps == list(range(1, 41)) and dialog.live.val_steps == [10, 20, 30, 40]
    assert dialog.live.crops.has_image(0, 2)  # the validation crop's prediction was shown
    assert dialog.pages.currentIndex() == RESULT
    assert "Pearson r" in dialog.card.toHtml()
    assert dialog.manifest["target"] == "nuclei" and dialog.manifest["metrics"]["pearson_r"] > -1
    assert dialog.worker.thread.objectName() == "labelfree-training"  # it ran on the worker's own thread

    with qtbot.waitSignal(dialog.installed, timeout=60000) as installed:
        qtbot.mouseClick(dialog.install_button, Qt.MouseButton.LeftButton)
    model_id = installed.args[0]
    assert model_id in {m.id for m in ModelRegistry().list()}
    record = window.file_list.current()
    qtbot.waitUntil(lambda: record.result is not None and record.result.model_id == model_id, timeout=60000)
    assert record.result.prediction.shape[-2:] == (64, 64)
    assert np.isfinite(record.result.prediction).all()
    assert window.controls.model_id() == model_id
    window.runner.wait(5000)


def test_pause_checkpoints_and_resume_continues_from_the_same_step(qtbot, dialog, tmp_path):
    from labelfree_app.training.checkpoint import list_checkpoints

    bf, dapi = write_pairs(tmp_path)
    add_pairs(qtbot, dialog, [bf / "field.tif"], [dapi / "field.tif"])
    dialog.setup.config_changes = tiny(max_steps=5000, val_every=1000)
    start_and_wait_steps(qtbot, dialog, 5)

    with qtbot.waitSignal(dialog.trainingPaused, timeout=30000) as paused:
        qtbot.mouseClick(dialog.live.pause_button, Qt.MouseButton.LeftButton)
    step = paused.args[0]
    assert step >= 5 and dialog.live.pause_button.text() == "Resume"
    work = dialog.config.resolved_work_dir
    assert list_checkpoints(work / "checkpoints")[-1].name == f"step-{step:08d}"
    assert not (dialog.config.out_dir / "manifest.json").exists()  # a pause writes no model

    qtbot.mouseClick(dialog.live.pause_button, Qt.MouseButton.LeftButton)  # Resume
    qtbot.waitUntil(lambda: dialog.live.step >= step + 5, timeout=60000)
    assert f"resumed at step {step}" in dialog.live.status_label.text()
    assert dialog.live.steps[: step + 5] == list(range(1, step + 6))  # no step repeated or skipped

    # Stop from a pause still writes the model.
    with qtbot.waitSignal(dialog.trainingPaused, timeout=30000):
        dialog.pause()
    with qtbot.waitSignal(dialog.trainingFinished, timeout=60000) as finished:
        qtbot.mouseClick(dialog.live.stop_button, Qt.MouseButton.LeftButton)
    assert finished.args[0].stop_reason == "stopped" and finished.args[0].steps == dialog.live.step


def test_stop_saves_a_model_that_loads_and_predicts(qtbot, dialog, tmp_path):
    from labelfree_app.core.engine import PredictionEngine
    from labelfree_app.io import read_image
    from labelfree_app.models.package import load_package

    bf, dapi = write_pairs(tmp_path)
    add_pairs(qtbot, dialog, [bf], [dapi])
    dialog.setup.config_changes = tiny(max_steps=5000, val_every=5)
    start_and_wait_steps(qtbot, dialog, 12)
    with qtbot.waitSignal(dialog.trainingFinished, timeout=60000) as finished:
        qtbot.mouseClick(dialog.live.stop_button, Qt.MouseButton.LeftButton)
    event = finished.args[0]
    assert event.stop_reason == "stopped" and 12 <= event.steps < 5000
    assert event.best_step is not None and event.best_step % 5 == 0 or event.best_step == event.steps
    package = load_package(event.package)
    assert package.manifest.to_dict()["training"]["settings"]["stop_reason"] == "stopped"
    result = PredictionEngine(package, device="cpu").predict(read_image(bf / "field.tif"))
    assert result.prediction.shape == (1, 1, 64, 64)


def test_pairs_of_different_sizes_are_refused_before_training(qtbot, dialog, tmp_path):
    bf, dapi = write_pairs(tmp_path, target_shape=(48, 64))
    add_pairs(qtbot, dialog, [bf], [dapi], ok=False)
    problem = dialog.setup.pairs_box.problem
    assert "64×64 px" in problem and "48×64 px" in problem and "same size" in problem
    assert not dialog.setup.start_button.isEnabled()
    assert not dialog.start() and dialog.setup.message_label.text() == problem
    assert dialog.worker is None and dialog.pages.currentIndex() == SETUP


def test_an_input_without_its_target_is_refused_with_its_name(qtbot, dialog, tmp_path):
    bf, dapi = write_pairs(tmp_path, names=("a", "b", "c"))
    (dapi / "b.tif").unlink()
    add_pairs(qtbot, dialog, [bf], [dapi], ok=False)
    assert dialog.setup.pairs_box.problem == (
        "The input b.tif has no target with the same name (3 inputs, 2 targets); add its target or remove the input.")
    assert not dialog.start() and dialog.worker is None


def test_a_file_gone_after_the_check_is_refused_when_starting(qtbot, dialog, tmp_path):
    bf, dapi = write_pairs(tmp_path)
    add_pairs(qtbot, dialog, [bf], [dapi])
    (dapi / "field.tif").unlink()
    with qtbot.waitSignal(dialog.trainingFailed, timeout=30000) as failed:
        assert dialog.start()
    assert "does not exist" in failed.args[0] and "field.tif" in failed.args[0]
    assert dialog.setup.message_label.text() == failed.args[0]
    assert dialog.worker is None and dialog.pages.currentIndex() == SETUP


def test_multichannel_files_pick_their_input_and_target_channels(qtbot, dialog, tmp_path):
    path = write_field(tmp_path / "two_channels.ome.tif", seed=1, shape=(64, 64))
    box = dialog.setup.pairs_box
    box.mode_combo.setCurrentIndex(1)
    drop_files(box.multi_list, [path])
    qtbot.waitUntil(lambda: box.input_channel_combo.count() == 2 and not box.checking and bool(box.pairs),
                    timeout=30000)
    assert box.input_channel_combo.currentText() == "Brightfield"
    assert box.target_channel_combo.currentText() == "Hoechst"
    spec = box.pairs[0].spec
    assert (spec.input_channel, spec.target_channel) == (0, 1)
    assert not np.allclose(box.pairs[0].input_thumb, box.pairs[0].target_thumb)
    box.target_channel_combo.setCurrentIndex(0)  # the same channel twice cannot be trained on
    qtbot.waitUntil(lambda: not box.checking, timeout=30000)
    assert "two different channels" in box.problem and not dialog.setup.start_button.isEnabled()


def test_start_from_offers_fitting_models_and_the_quick_fine_tune_preset(qtbot, tmp_path):
    from labelfree_app.gui.train.setup import SCRATCH, SetupPage
    from tests.factories import stack_and_plane_entries

    page = SetupPage()
    qtbot.addWidget(page)
    page.set_models(stack_and_plane_entries(tmp_path))
    items = [page.start_combo.itemData(i) for i in range(page.start_combo.count())]
    assert items == [None, "plane-model"]  # the 13-plane model cannot start a single-plane run
    assert page.start_combo.currentData() == "plane-model" and "1 installed model(s) do not fit" in page.start_note.text()
    page.type_combo.setCurrentIndex(page.type_combo.findData("diffusion"))
    assert page.start_combo.count() == 1 and page.start_combo.currentText() == SCRATCH
    page.type_combo.setCurrentIndex(page.type_combo.findData("unet"))
    page.start_combo.setCurrentIndex(0)
    page.preset_combo.setCurrentIndex(page.preset_combo.findData("finetune"))
    assert page.minutes_spin.value() == 2.0 and page.start_combo.currentData() == "plane-model"
    assert page.choices()["init_from"] == "plane-model"
