"""Model picker, model manager, model card, About, settings that survive a restart, run controls."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from labelfree_app.errors import ModelError
from labelfree_app.gui.dialogs import about_html
from labelfree_app.gui.models.card import model_card_html
from labelfree_app.gui.models.manager import ModelManagerDialog
from labelfree_app.gui.predict.run_controls import RunControls, eta_seconds, format_duration
from labelfree_app.gui.settings import MAX_RECENT_FILES, GuiSettings, settings_path
from tests.gui.helpers import select_model


def test_model_picker_groups_models_by_target_and_preselects_the_default(qtbot, window):
    controls = window.controls
    targets = [controls.target_combo.itemText(i) for i in range(controls.target_combo.count())]
    assert targets == ["DNA (DAPI)", "membrane"]
    assert controls.model_id() == "diff-nuclei"  # the default
    assert controls.model_combo.count() == 2
    controls.target_combo.setCurrentIndex(1)
    assert controls.model_id() == "unet-membrane" and controls.model_combo.count() == 1
    assert controls.unet_box.isVisibleTo(window) and not controls.tta_box.isEnabled()  # offers no TTA


def test_device_picker_lists_auto_and_what_was_found(qtbot, window):
    combo = window.controls.device_combo
    items = [(combo.itemText(i), combo.itemData(i)) for i in range(combo.count())]
    assert items == [("auto → CPU (2 cores)", "auto"), ("CPU (2 cores)", "cpu")]


def test_diffusion_settings_go_to_the_engine_and_default_to_the_models(qtbot):
    controls = RunControls()
    qtbot.addWidget(controls)
    from tests.gui.fakes import FakeBackend

    controls.set_models(FakeBackend().models)
    assert controls.settings() == {"device": "auto", "seed": 0, "samples": None, "steps": None,
                                   "sampler": None, "frames": 24, "preview_interval_s": 0.08, "scale": "pixel-size",
                                   "pixel_size_um": None}
    controls.samples_spin.setValue(4)
    controls.steps_spin.setValue(10)
    controls.sampler_combo.setCurrentIndex(controls.sampler_combo.findData("ddpm"))
    controls.seed_spin.setValue(3)
    settings = controls.settings()
    assert (settings["samples"], settings["steps"], settings["sampler"], settings["seed"]) == (4, 10, "ddpm", 3)


def test_progress_shows_an_eta_extrapolated_from_the_stage():
    assert eta_seconds(10.0, 0.25) == pytest.approx(30.0)
    assert eta_seconds(0.0, 0.0) is None
    assert format_duration(75) == "1 min 15 s" and format_duration(4) == "4 s"


def test_progress_bar_and_eta_label_follow_progress_events(qtbot):
    controls = RunControls()
    qtbot.addWidget(controls)
    controls.set_running(True)
    controls._stage_started_at -= 0  # same stage start as the first event below
    controls.show_progress("sampling", 5, 20, "sample 1/2")
    assert controls.progress_bar.value() == 250
    assert controls.progress_bar.format() == "sampling 5/20"
    assert controls.eta_label.text().startswith("sample 1/2")
    assert not controls.run_button.isEnabled() and controls.cancel_button.isEnabled()


def test_model_card_is_one_click_away_and_says_what_matters(qtbot, window):
    window.controls.card_button.click()
    dialog = window.dialogs[-1]
    text = dialog.browser.toPlainText()
    for expected in ("Diffusion nuclei", "DNA (DAPI)", "BSD-3-Clause", "Pearson r", "synthetic", "Demo model"):
        assert expected in text


def test_model_card_html_escapes_and_lists_metrics():
    html = model_card_html({"name": "<b>x</b>", "target": "DNA", "metrics": {"pearson_r": 0.876543}})
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "Pearson r 0.88" in html


def test_model_manager_sets_default_removes_and_installs(qtbot, backend, tmp_path):
    changes: list[int] = []
    answers = {"path": tmp_path / "actin-model.zip", "confirm": True}
    dialog = ModelManagerDialog(backend, ask_path=lambda what: answers["path"],
                                ask_text=lambda title, question: "Actin", confirm=lambda q: answers["confirm"])
    qtbot.addWidget(dialog)
    dialog.modelsChanged.connect(lambda: changes.append(1))
    assert dialog.model_list.count() == 3
    dialog.model_list.setCurrentRow(1)  # unet-nuclei
    assert "U-Net nuclei" in dialog.card.toPlainText()
    dialog.default_button.click()
    assert backend.defaults == {"DNA (DAPI)": "unet-nuclei"}
    assert "default" in dialog.model_list.item(1).text()
    dialog.remove_button.click()
    assert [m.id for m in backend.models] == ["diff-nuclei", "unet-membrane"]
    dialog.install_file_button.click()
    qtbot.waitUntil(lambda: dialog.model_list.count() == 3, timeout=3000)
    assert dialog.current().id == "actin-model"
    dialog.import_fnet_button.click()
    qtbot.waitUntil(lambda: dialog.model_list.count() == 4, timeout=3000)
    assert dialog.current().target == "Actin"
    assert len(changes) == 4


def test_model_manager_shows_a_failed_install_as_its_sentence(qtbot, backend, tmp_path):
    sentence = "The model in bad.zip has no manifest.json; it is not a LabelFree model package."

    def refuse(path: Path):
        raise ModelError(sentence)

    backend.install_model = refuse
    dialog = ModelManagerDialog(backend, ask_path=lambda what: tmp_path / "bad.zip")
    qtbot.addWidget(dialog)
    dialog.install_file_button.click()
    qtbot.waitUntil(lambda: dialog.status_label.text() == sentence, timeout=3000)
    assert dialog.isEnabled()


def test_bundled_models_cannot_be_removed_from_the_dialog(qtbot, backend):
    from dataclasses import replace

    backend.models[0] = replace(backend.models[0], source="bundled")
    dialog = ModelManagerDialog(backend)
    qtbot.addWidget(dialog)
    dialog.model_list.setCurrentRow(0)
    assert not dialog.remove_button.isEnabled()
    assert "(bundled)" in dialog.model_list.item(0).text()


def test_about_names_the_version_licenses_and_model_attributions(backend):
    manifests = {m.id: backend.model_manifest(m.id) for m in backend.models}
    text = about_html(backend.models, manifests)
    from labelfree_app import __version__

    assert f"LabelFree {__version__}" in text
    assert "LGPL-3.0" in text and "BSD-3-Clause" in text
    assert "Diffusion nuclei" in text and "tests" in text  # the model and its attribution


def test_settings_survive_a_restart(qtbot, backend, tiff_2d):
    from labelfree_app.gui.main_window import MainWindow

    first = MainWindow(backend, GuiSettings())
    qtbot.addWidget(first)
    first.show()
    qtbot.waitUntil(lambda: first.controls.device_combo.count() == 2, timeout=3000)
    select_model(first, "unet-membrane")
    first.controls.device_combo.setCurrentIndex(1)
    first.controls.steps_spin.setValue(12)
    first.controls.seed_spin.setValue(42)
    first.open_paths([tiff_2d])
    first.resize(first.width(), 700)  # the offscreen screen is 800 px wide: widths are clamped
    first.close()
    assert settings_path().is_file()

    second = MainWindow(backend, GuiSettings())
    qtbot.addWidget(second)
    second.show()
    qtbot.waitUntil(lambda: second.controls.device_combo.count() == 2, timeout=3000)
    qtbot.waitUntil(lambda: second.controls.model_id() == "unet-membrane", timeout=3000)
    assert second.controls.device() == "cpu"
    assert second.controls.steps_spin.value() == 12 and second.controls.seed_spin.value() == 42
    assert second.menus.recent_menu.actions()[0].toolTip() == str(tiff_2d)
    assert second.settings.get("last_folder") == str(tiff_2d.parent)
    assert second.height() == 700  # not the default 900


def test_recent_files_are_unique_newest_first_and_capped(tmp_path):
    settings = GuiSettings(tmp_path / "s.json")
    for index in range(MAX_RECENT_FILES + 3):
        settings.add_recent_file(tmp_path / f"{index}.tif")
    settings.add_recent_file(tmp_path / "5.tif")
    recent = settings.get("recent_files")
    assert len(recent) == MAX_RECENT_FILES and recent[0] == str(tmp_path / "5.tif")
    assert len(set(recent)) == len(recent)


def test_a_damaged_settings_file_is_ignored(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{not json")
    settings = GuiSettings(path)
    assert settings.get("device") == "auto"
    settings.set("device", "cpu")
    settings.save()
    assert GuiSettings(path).get("device") == "cpu"


def test_the_model_list_marks_what_fits_the_image_and_switches_to_a_fitting_model(qtbot, tmp_path):
    from labelfree_app.models.fit import InputFacts
    from tests.factories import stack_and_plane_entries

    controls = RunControls()
    qtbot.addWidget(controls)
    controls.set_models(stack_and_plane_entries(tmp_path))
    controls.model_combo.setCurrentIndex(controls.model_combo.findData("stack-model"))
    controls.set_image_facts(InputFacts(planes=1))
    assert controls.model_id() == "plane-model"  # the chosen model did not fit: the best fitting one instead
    stack_row = controls.model_combo.findData("stack-model")
    assert controls.model_combo.itemText(stack_row).endswith("does not fit this image")
    assert "takes a 13-plane z-stack" in controls.model_combo.itemData(stack_row, Qt.ItemDataRole.ToolTipRole)
    assert controls.fit_label.text() == "Fits this image (a single plane)."
    controls.set_image_facts(InputFacts(planes=13))
    assert controls.model_id() == "stack-model"  # a new image: the rule again (the whole stack first)
    assert controls.fit_label.text() == "Fits this image (a 13-plane z-stack)."
    picks: list[str] = []
    controls.modelPicked.connect(picks.append)
    controls.model_combo.setCurrentIndex(controls.model_combo.findData("plane-model"))
    assert picks == ["plane-model"]  # the user's pick, for the window to keep with this image
    controls.set_image_facts(InputFacts(planes=13), picked="plane-model")
    assert controls.model_id() == "plane-model"  # the user's pick for this image stays
    controls.set_image_facts(InputFacts(planes=1), picked="stack-model")
    assert controls.model_id() == "plane-model"  # ... unless it does not fit


def test_run_is_disabled_while_the_chosen_model_does_not_fit_the_image(qtbot, tmp_path):
    from labelfree_app.models.fit import InputFacts
    from tests.factories import stack_and_plane_entries

    controls = RunControls()
    qtbot.addWidget(controls)
    assert not controls.run_button.isEnabled()  # the model list has not loaded yet
    controls.set_image_facts(InputFacts(planes=1))
    controls.set_models(stack_and_plane_entries(tmp_path))
    assert controls.model_id() == "plane-model" and controls.run_button.isEnabled()
    controls.model_combo.setCurrentIndex(controls.model_combo.findData("stack-model"))
    assert not controls.run_button.isEnabled()
    assert "does not fit this image" in controls.run_problem() and "13-plane" in controls.run_button.toolTip()
    controls.model_combo.setCurrentIndex(controls.model_combo.findData("plane-model"))
    assert controls.run_button.isEnabled() and controls.run_problem() is None
