"""How far a prediction can be trusted, in the window: the note, the trust map, Improve, Export."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PySide6.QtCore import Qt

from labelfree_app.gui.predict.trust_map import TINT_MAX_ALPHA
from labelfree_app.gui.trust_levels import LEVEL_COLOURS
from tests.gui.fakes import TRUST_R, fake_manifest, fake_trust, write_tiff
from tests.gui.helpers import drop_files, run_and_wait, select_model, wait_loaded


def predict(qtbot, window, backend, path: Path, *, level: str | None, trust_map: bool = False,
            model_id: str = "unet-nuclei") -> None:
    backend.trust = fake_trust(level) if level else None
    backend.with_trust_map = trust_map
    drop_files(window, [path])
    wait_loaded(qtbot, window)
    select_model(window, model_id)
    assert run_and_wait(qtbot, window) == "done"


@pytest.mark.parametrize("level", ["good", "uncertain", "not trustworthy"])
def test_the_note_shows_the_level_its_colour_the_expected_r_why_and_what_to_do(qtbot, window, backend, tiff_2d,
                                                                               level):
    predict(qtbot, window, backend, tiff_2d, level=level)
    note = window.trust.note
    trust = backend.trust
    assert note.isVisible() and note.level == level
    text = note.text()
    assert level.upper() in text
    assert f"expected r {TRUST_R[level]:.2f} ({trust.low:.2f}–{trust.high:.2f})" in text.lower()
    assert "DNA (DAPI) stain" in text  # the model's target
    assert trust.reason in text and trust.advice in text
    colour = LEVEL_COLOURS[level]
    assert colour in note.badge.styleSheet() and colour in note.styleSheet()
    assert note.improve_button.isVisible() == (level != "good")
    # The panel's title says the level in its colour; only a doubtful result is framed.
    title = window.panels.prediction_panel.title_label
    assert title.text.endswith(f"— {level}") and title.opts.get("color") == colour
    border = window.panels.prediction_panel.view_box.border
    framed = border is not None and border.style() != Qt.PenStyle.NoPen
    assert framed == (level != "good")
    assert not framed or border.color().name() == colour
    # The status bar and the file list say it too.
    assert level.capitalize() in window.statusBar().currentMessage()
    item = window.file_list.item(0)
    assert item.text().endswith(f"done · {level}")
    assert item.foreground().color().name() == colour.lower()
    assert trust.reason in item.toolTip()


def test_without_an_estimate_the_note_says_not_estimated_and_nothing_is_tinted(qtbot, window, backend, tiff_2d):
    predict(qtbot, window, backend, tiff_2d, level=None)
    note = window.trust.note
    assert note.isVisible() and note.level == "not estimated"
    assert "not estimated for this model" in note.text() and note.toolTip()
    assert not note.improve_button.isVisible()
    assert window.panels.prediction_panel.title_label.text.startswith("Prediction")
    assert "trustworthy" not in window.panels.prediction_panel.title_label.text
    assert window.file_list.item(0).text().endswith("done")
    assert not window.trust.map_view.box.isEnabled()  # no map either


def test_the_note_follows_the_shown_file_and_goes_with_its_result(qtbot, window, backend, tiff_2d, tmp_path):
    predict(qtbot, window, backend, tiff_2d, level="not trustworthy")
    other = write_tiff(tmp_path / "other.tif", np.ones((1, 1, 48, 64), np.float32), ["bright-field"])
    drop_files(window, [other])
    wait_loaded(qtbot, window, count=2)
    qtbot.waitUntil(lambda: window.file_list.current() is not None and window.file_list.current().path == other)
    assert not window.trust.note.isVisible()  # no result for this file yet
    assert "trustworthy" not in window.panels.prediction_panel.title_label.text
    window.file_list.select(window.file_list.files[0])
    assert window.trust.note.isVisible() and window.trust.note.level == "not trustworthy"


def test_the_trust_map_toggle_tints_unfamiliar_input_and_follows_the_z_slider(qtbot, window, backend,
                                                                             tiff_3d_two_channels):
    predict(qtbot, window, backend, tiff_3d_two_channels, level="uncertain", trust_map=True)
    panels, view = window.panels, window.trust.map_view
    panel = panels.prediction_panel
    assert view.box.isEnabled() and not panel.shows_tint
    qtbot.mouseClick(view.box, Qt.MouseButton.LeftButton)
    assert view.box.isChecked() and view.action.isChecked() and panel.shows_tint
    assert "magenta" in window.trust.note.text()  # the legend
    result_map = window.file_list.current().result.trust_map[0]
    for z in (0, 3):
        panels.z_slider.setValue(z)
        np.testing.assert_array_equal(panel.tint_values, result_map[z])
        alpha = panel.tint_item.image[..., 3]
        unfamiliar = 4 * (z + 1)  # fake_trust_map: the first 4·(z+1) columns of plane z
        assert alpha[:, :unfamiliar].min() == pytest.approx(TINT_MAX_ALPHA) and alpha[:, unfamiliar:].max() == 0.0
    panels.set_max_projection(True)
    np.testing.assert_array_equal(panel.tint_values, result_map.min(axis=0))  # the least familiar plane
    panels.set_max_projection(False)
    # The tint is a layer of the Prediction view, so it pans and zooms with the linked panels.
    assert panel.tint_item.getViewBox() is panel.view_box
    assert panel.view_box.linkedView(0) is panels.input_panel.view_box
    assert "familiarity 0.00" in panels.probe(1, 5) and "familiarity 0.90" in panels.probe(30, 5)
    view.action.trigger()  # the View menu's entry turns it off like the box
    assert not view.box.isChecked() and not panel.shows_tint and "magenta" not in window.trust.note.text()


def test_improve_opens_the_train_page_with_the_model_the_quick_fine_tune_and_the_files_channels(
        qtbot, window, backend, tmp_path):
    from labelfree_app.gui.train.page import TrainDialog
    from labelfree_app.io import write_image

    backend.models = [dataclasses.replace(m, manifest=fake_manifest(m)) for m in backend.models]
    window.refresh_models()
    qtbot.waitUntil(lambda: all(m.manifest is not None for m in window.models), timeout=3000)
    rng = np.random.default_rng(3)
    path = tmp_path / "field.ome.tif"  # the DNA stain is not the first channel that is not the input
    write_image(path, rng.random((3, 1, 64, 64), dtype=np.float32), "CZYX",
                channel_names=["Phase", "Membrane GFP", "DAPI"])
    backend_read = backend.read_image
    backend.read_image = lambda p, channel=None: _ome_image(backend_read, p)
    predict(qtbot, window, backend, path, level="not trustworthy")
    record = window.file_list.current()
    assert record.channel == 0
    qtbot.mouseClick(window.trust.note.improve_button, Qt.MouseButton.LeftButton)
    dialog = next(d for d in window.dialogs if isinstance(d, TrainDialog))
    qtbot.addWidget(dialog)
    setup = dialog.setup
    box = setup.pairs_box
    qtbot.waitUntil(lambda: box.input_channel_combo.count() == 3 and not box.checking, timeout=30000)
    assert setup.start_combo.currentData() == "unet-nuclei"
    assert setup.preset_combo.currentData() == "finetune" and setup.minutes_spin.value() == 2.0
    assert setup.type_combo.currentData() == "unet"
    assert box.mode_combo.currentIndex() == 1 and box.multi_list.paths() == [path]
    assert box.input_channel_combo.currentData() == 0 and box.target_channel_combo.currentData() == 2  # DAPI
    assert setup.target_edit.text() == "DNA (DAPI)"
    assert setup.intro_label.isVisible() and "'DAPI' as the target" in setup.intro_label.text()
    assert setup.choices()["init_from"] == "unet-nuclei" and setup.choices()["preset"] == "finetune"

    # When that training ends, the new model is installed, selected and run on the same file.
    other = write_tiff(tmp_path / "other.tif", np.ones((1, 1, 64, 64), np.float32), ["bright-field"])
    drop_files(window, [other])
    wait_loaded(qtbot, window, count=2)
    package = tmp_path / "tuned-nuclei"
    event = SimpleNamespace(steps=50, seconds=120.0, stop_reason="max_minutes", package=package,
                            summary=lambda: "best validation r 0.80")
    backend.trust = fake_trust("good")
    with qtbot.waitSignal(window.runner.finished, timeout=10000):
        dialog._on_trained(event, {"id": "tuned-nuclei", "name": "tuned", "target": "DNA (DAPI)"})
    window.runner.wait(2000)
    assert window.file_list.current() is record and record.result.model_id == "tuned-nuclei"
    assert window.controls.model_id() == "tuned-nuclei"
    note = window.trust.note
    assert note.level == "good"
    assert "Before fine-tuning: unet-nuclei, expected r 0.31" in note.text()


def _ome_image(read, path):
    """Channel names from the OME metadata (the fake reader knows only its own JSON descriptions)."""
    from labelfree_app.io import read_image

    if str(path).endswith(".ome.tif"):
        image = read_image(path)
        return SimpleNamespace(data=np.asarray(image.data, np.float32), channel_names=tuple(image.channel_names),
                               path=path, pixel_size_um={})
    return read(path)


def test_improve_without_a_stain_in_the_file_puts_it_on_the_input_list_and_asks_for_one(qtbot, window, backend,
                                                                                      tiff_2d):
    from labelfree_app.gui.train.page import TrainDialog

    backend.models = [dataclasses.replace(m, manifest=fake_manifest(m)) for m in backend.models]
    window.refresh_models()
    qtbot.waitUntil(lambda: all(m.manifest is not None for m in window.models), timeout=3000)
    predict(qtbot, window, backend, tiff_2d, level="uncertain")
    window.menus.improve_action.trigger()
    dialog = next(d for d in window.dialogs if isinstance(d, TrainDialog))
    qtbot.addWidget(dialog)
    box = dialog.setup.pairs_box
    assert box.mode_combo.currentIndex() == 0 and box.input_list.paths() == [tiff_2d]
    assert not box.target_list.paths()
    assert "Add a stained field" in dialog.setup.intro_label.text()
    assert dialog.setup.start_combo.currentData() == "unet-nuclei"


def test_improve_without_a_result_says_to_run_first(qtbot, window):
    assert window.improve_current() is None
    assert "Run a prediction first" in window.statusBar().currentMessage()


def test_export_writes_the_trust_map_beside_the_prediction(qtbot, window, backend, tiff_2d, tmp_path):
    from labelfree_app.io import read_image

    predict(qtbot, window, backend, tiff_2d, level="uncertain", trust_map=True)
    out = tmp_path / "exports"
    out.mkdir()
    with qtbot.waitSignal(window.exported, timeout=10000) as blocker:
        assert window.results.export_current(out)
    names = sorted(p.name for p in blocker.args[0])
    assert "cells_2d__unet-nuclei__trust.ome.tif" in names
    written = read_image(out / "cells_2d__unet-nuclei__trust.ome.tif").data
    np.testing.assert_allclose(np.squeeze(written), np.squeeze(window.file_list.current().result.trust_map))
