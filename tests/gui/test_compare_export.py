"""Ground-truth comparison and export of the current result."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from PIL import Image as PILImage

from labelfree_app.gui.predict.export import frames_to_uint8
from labelfree_app.gui.viewer.compare import CompareDialog, dice, matching_channel
from labelfree_app.io import read_image, read_provenance
from labelfree_app.models.package import sha256_of_file
from tests.gui.fakes import write_tiff
from tests.gui.helpers import drop_files, run_and_wait, wait_loaded


def test_matching_channel_finds_the_models_target_by_name():
    assert matching_channel(["Brightfield", "DAPI"], "DNA (DAPI)", exclude=0) == 1
    assert matching_channel(["DNA", "TL"], "DNA", exclude=1) == 0
    assert matching_channel(["Brightfield", "GFP"], "DNA (DAPI)", exclude=0) is None
    assert matching_channel(["DAPI"], "DNA (DAPI)", exclude=0) is None  # never the input itself
    assert matching_channel(["Brightfield", "Hoechst 33342"], "DNA", exclude=0) == 1  # a known stain
    assert matching_channel(["Brightfield", "DAPI"], "membrane", exclude=0) is None


def test_dice_measures_mask_overlap():
    a = np.array([[1, 1, 0, 0]], bool)
    assert dice(a, a) == 1.0
    assert dice(a, ~a) == 0.0
    assert dice(a, np.array([[1, 0, 0, 0]], bool)) == pytest.approx(2 / 3)


def test_compare_dialog_shows_r_difference_maps_masks_and_flips_in_place(qtbot, backend):
    rng = np.random.default_rng(3)
    observed = rng.random((30, 30)).astype(np.float32)
    predicted = (observed + rng.normal(0, 0.2, observed.shape)).astype(np.float32)
    dialog = CompareDialog(observed, predicted, backend, where="z 2", source="channel 'DAPI'")
    qtbot.addWidget(dialog)
    expected_r = np.corrcoef(observed.ravel(), predicted.ravel())[0, 1]
    assert dialog.pearson_r == pytest.approx(expected_r)
    assert f"Pearson r = {expected_r:.3f}" in dialog.summary_label.text()
    assert set(dialog.map_panels) == {"observed_minus_predicted", "predicted_minus_observed", "absolute"}
    signed = dialog.map_panels["observed_minus_predicted"]
    assert signed.levels[0] == pytest.approx(-signed.levels[1])  # symmetric around zero
    np.testing.assert_array_equal(dialog.observed_mask_panel.plane, observed > observed.mean())
    np.testing.assert_array_equal(dialog.predicted_mask_panel.plane, predicted > predicted.mean())
    left_before = dialog.observed_panel.plane.copy()
    right_before = dialog.predicted_panel.plane.copy()
    dialog.flip_box.setChecked(True)
    np.testing.assert_array_equal(dialog.observed_panel.plane, right_before)
    np.testing.assert_array_equal(dialog.predicted_panel.plane, left_before)
    assert dialog.observed_panel.title_label.text.startswith("Predicted")
    dialog.flip_box.setChecked(False)
    np.testing.assert_array_equal(dialog.observed_panel.plane, left_before)


def test_compare_uses_the_files_fluorescence_channel_for_the_models_target(qtbot, window, tiff_3d_two_channels):
    drop_files(window, [tiff_3d_two_channels])
    wait_loaded(qtbot, window)
    run_and_wait(qtbot, window)
    window.menus.compare_action.trigger()
    dialog = window.dialogs[-1]
    assert isinstance(dialog, CompareDialog) and dialog.isVisible()
    record = window.file_list.current()
    z = window.panels.z
    observed = record.image.data[0, z]  # the DAPI channel
    predicted = record.result.prediction[0, z]
    assert dialog.pearson_r == pytest.approx(np.corrcoef(observed.ravel(), predicted.ravel())[0, 1], abs=1e-5)
    assert "DAPI" in dialog.summary_label.text()


def test_compare_without_ground_truth_explains_how_to_get_one(qtbot, window, tiff_2d):
    drop_files(window, [tiff_2d])
    wait_loaded(qtbot, window)
    run_and_wait(qtbot, window)
    offered: list = []
    window.results.pick_ground_truth = lambda beside: offered.append(beside)  # the picker, cancelled
    assert window.results.compare_current() is None
    assert offered == [tiff_2d]  # a file picker is offered, not only drag-and-drop
    message = window.statusBar().currentMessage()
    assert "no fluorescence channel" in message and "Prediction panel" in message


def test_a_file_dropped_on_the_prediction_panel_becomes_the_ground_truth(qtbot, window, tiff_2d, tmp_path):
    drop_files(window, [tiff_2d])
    wait_loaded(qtbot, window)
    run_and_wait(qtbot, window)
    truth = np.random.default_rng(5).random((1, 1, 48, 64)).astype(np.float32)
    truth_path = write_tiff(tmp_path / "dapi.tif", truth, ["DAPI"])
    drop_files(window.panels.prediction_panel.graphics, [truth_path])
    qtbot.waitUntil(lambda: isinstance(window.dialogs[-1] if window.dialogs else None, CompareDialog), timeout=3000)
    record = window.file_list.current()
    np.testing.assert_array_equal(record.ground_truth, truth[0])
    assert len(window.file_list.files) == 1  # it was not opened as an input
    assert "dapi.tif" in window.dialogs[-1].summary_label.text()


def test_a_ground_truth_of_another_size_is_refused_with_a_sentence(qtbot, window, tiff_2d, tmp_path):
    drop_files(window, [tiff_2d])
    wait_loaded(qtbot, window)
    run_and_wait(qtbot, window)
    wrong = write_tiff(tmp_path / "small.tif", np.ones((1, 1, 10, 10), np.float32), ["DAPI"])
    drop_files(window.panels.prediction_panel.graphics, [wrong])
    qtbot.waitUntil(lambda: "same field" in window.statusBar().currentMessage(), timeout=3000)
    assert window.dialogs[-1].text() == window.statusBar().currentMessage()


def test_export_writes_the_cli_files_plus_gif_and_panels_png(qtbot, window, backend, tiff_2d, tmp_path):
    drop_files(window, [tiff_2d])
    wait_loaded(qtbot, window)
    run_and_wait(qtbot, window)
    out = tmp_path / "exports"
    out.mkdir()
    with qtbot.waitSignal(window.exported, timeout=10000) as blocker:
        assert window.results.export_current(out)
    written = blocker.args[0]
    names = sorted(p.name for p in written)
    base = "cells_2d__diff-nuclei"  # the names `labelfree predict` gives (export.output_paths)
    assert names == sorted(f"{base}{kind}" for kind in
                           (".ome.tif", "__variance.ome.tif", "__steps.ome.tif", "__steps.gif", "__panels.png"))
    result = window.file_list.current().result
    np.testing.assert_allclose(read_image(out / f"{base}.ome.tif").data, result.prediction)
    meta = read_provenance(out / f"{base}__steps.ome.tif")
    assert meta["model"]["id"] == "diff-nuclei" and meta["content"] == "denoising steps"
    assert meta["inputs"] == [{"path": str(tiff_2d.resolve()), "sha256": sha256_of_file(tiff_2d)}]
    assert read_image(out / f"{base}__steps.ome.tif").data.shape[0] == len(result.frames)
    with PILImage.open(out / f"{base}__steps.gif") as gif:
        assert gif.n_frames == len(result.frames)
    with PILImage.open(out / f"{base}__panels.png") as png:
        assert png.size[0] > 200
    mask = os.umask(0)
    os.umask(mask)
    for path in written:  # io.atomic's usual modes, not mkstemp's 0600
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path.name
    assert window.settings.get("export_folder") == str(out)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_export_to_a_missing_folder_fails_with_a_sentence(qtbot, window, tiff_2d, tmp_path):
    drop_files(window, [tiff_2d])
    wait_loaded(qtbot, window)
    run_and_wait(qtbot, window)
    window.results.export_current(tmp_path / "missing")
    qtbot.waitUntil(lambda: "does not exist" in window.statusBar().currentMessage(), timeout=3000)


def test_gif_frames_are_8_bit_and_take_the_max_over_z():
    frames = np.zeros((2, 1, 3, 4, 4), np.float32)
    frames[1, 0, 2, 1, 1] = 5.0
    images = frames_to_uint8(frames)
    assert len(images) == 2 and images[0].dtype == np.uint8 and images[0].shape == (4, 4)
    assert images[1][1, 1] == 255
