"""File ▸ Watch folder…: the real watch runs off the GUI thread, lists files as they arrive, shows each
new prediction in the window, keeps going past a failing file and stops cleanly with its report."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from labelfree_app.gui.backend import CoreBackend
from labelfree_app.gui.settings import GuiSettings
from labelfree_app.gui.streamed_run import SavedResult
from labelfree_app.gui.watch import dialog as watch_dialog
from labelfree_app.gui.watch.dialog import WatchDialog, status_line
from labelfree_app.gui.watch.table import INPUT, MODEL, REASON, STATUS, TRUST
from labelfree_app.io import read_image
from tests.factories import make_diffusion_package, make_unet_package, write_field

pytest.importorskip("torch")

SETTLE_S = 0.5
TIMEOUT_MS = 180000  # a loaded 2-core machine: loading torch and predicting three tiny fields


def table_rows(dialog: WatchDialog) -> list[dict[str, str]]:
    table = dialog.table
    return [{"input": table.item(r, INPUT).text(), "model": table.item(r, MODEL).text(),
             "status": table.item(r, STATUS).text(), "trust": table.item(r, TRUST).text(),
             "reason": table.item(r, REASON).text()} for r in range(table.rowCount())]


def statuses(dialog: WatchDialog) -> list[str]:
    return [row["status"] for row in table_rows(dialog)]


def arrive(prepared: Path, folder: Path, name: str, *, temporary: bool = False) -> Path:
    """Copy a prepared field into the watched folder as a microscope would: in two chunks, under a
    temporary name first when ``temporary``."""
    data = prepared.read_bytes()
    final = folder / name
    target = folder / f"{name}.part" if temporary else final
    with open(target, "wb") as handle:
        handle.write(data[: len(data) // 2])
        handle.flush()
        time.sleep(0.1)
        handle.write(data[len(data) // 2:])
    if temporary:
        os.replace(target, final)
    return final


def stop(qtbot, dialog: WatchDialog):
    with qtbot.waitSignal(dialog.watchFinished, timeout=60000) as blocker:
        dialog.stop_after_current()
    qtbot.waitUntil(lambda: not dialog.is_running(), timeout=10000)
    return blocker.args[0]


@pytest.fixture()
def prepared(tmp_path: Path) -> list[Path]:
    return [write_field(tmp_path / "prepared" / f"field_{i}.tif", seed=i) for i in range(3)]


def test_files_arriving_are_predicted_in_order_and_the_window_shows_the_newest(qtbot, tmp_path, prepared):
    from labelfree_app.gui.main_window import MainWindow
    from labelfree_app.models.registry import ModelRegistry

    ModelRegistry().install(make_unet_package(tmp_path / "models").path, smoke_test=False)
    settings = GuiSettings()
    window = MainWindow(CoreBackend(), settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: any(m.id == "test-unet" for m in window.models), timeout=60000)
    window.controls.choose("test-unet")

    window.menus.watch_action.trigger()  # File ▸ Watch folder…
    dialog = window.dialogs[-1]
    assert isinstance(dialog, WatchDialog)
    qtbot.addWidget(dialog)  # closed (the watch cancelled) even when the test fails
    assert dialog.model_list.checked() == ["test-unet"]  # the window's model
    assert dialog.show_box.isChecked()
    folder = tmp_path / "microscope"
    folder.mkdir()
    out = folder / "predictions"  # inside the watched folder: never taken for input
    dialog.folder_edit.setText(str(folder))
    dialog.out_edit.setText(str(out))
    dialog.settle_spin.setValue(SETTLE_S)
    assert dialog.start()
    assert settings.get("watch_folder") == str(folder) and settings.get("watch_output_folder") == str(out)
    qtbot.waitUntil(lambda: dialog.status_label.text().startswith(f"Watching {folder}"), timeout=TIMEOUT_MS)

    arrive(prepared[0], folder, "a.tif")
    qtbot.waitUntil(lambda: bool(table_rows(dialog)) and table_rows(dialog)[0]["input"] == "a.tif", timeout=TIMEOUT_MS)
    arrive(prepared[1], folder, "b.tif", temporary=True)
    qtbot.wait(100)
    arrive(prepared[2], folder, "c.tif")
    qtbot.waitUntil(lambda: statuses(dialog) == ["done"] * 3, timeout=TIMEOUT_MS)

    rows = table_rows(dialog)
    assert [row["input"] for row in rows] == ["a.tif", "b.tif", "c.tif"]  # arrival order; no .part row
    assert {row["model"] for row in rows} == {"test-unet"}
    assert all(row["trust"] for row in rows)
    assert "3 done" in dialog.status_label.text()

    # The window shows the newest prediction, read from the file the watch wrote.
    written = out / "c__test-unet.ome.tif"
    qtbot.waitUntil(lambda: window.file_list.current() is not None
                    and window.file_list.current().path == folder / "c.tif", timeout=10000)
    record = window.file_list.current()
    assert isinstance(record.result, SavedResult) and record.result.prediction == written
    assert [r.path.name for r in window.file_list.files] == ["a.tif", "b.tif", "c.tif"]
    panel = window.panels.prediction_panel
    qtbot.waitUntil(lambda: panel.plane is not None and record.state == "done", timeout=30000)
    np.testing.assert_allclose(panel.plane, read_image(written).data[0, 0], rtol=1e-6)
    assert "c.tif" in window.windowTitle()

    stopped = stop(qtbot, dialog)
    assert stopped.fatal == "" and [row.status for row in stopped.rows] == ["done"] * 3
    report = json.loads((out / "batch_report.json").read_text(encoding="utf-8"))
    assert sorted(Path(row["input"]).name for row in report["rows"]) == ["a.tif", "b.tif", "c.tif"]
    assert (out / "batch_report.csv").is_file()
    assert "Stopped watching" in dialog.status_label.text() and "batch_report.csv" in dialog.status_label.text()
    assert dialog.start_button.isEnabled() and not dialog.stop_button.isEnabled()
    dialog.close()


def test_a_failing_file_shows_its_sentence_and_the_watch_goes_on(qtbot, tmp_path, prepared):
    package = make_unet_package(tmp_path / "models")
    model = SimpleNamespace(id=str(package.path), target="DNA", kind="unet")
    folder, out = tmp_path / "microscope", tmp_path / "out"
    folder.mkdir()
    dialog = WatchDialog(CoreBackend(), [model], selected_model=model.id, folder=str(folder), out_dir=str(out))
    qtbot.addWidget(dialog)
    dialog.settle_spin.setValue(SETTLE_S)
    dialog.show_box.setChecked(False)
    landed: list[Path] = []
    dialog.predictionLanded.connect(lambda path, result: landed.append(path))
    assert dialog.start()

    (folder / "broken.tif").write_bytes(b"II*\x00 not really a TIFF")
    qtbot.waitUntil(lambda: "failed" in statuses(dialog), timeout=TIMEOUT_MS)
    arrive(prepared[0], folder, "good.tif")
    qtbot.waitUntil(lambda: statuses(dialog) == ["failed", "done"], timeout=TIMEOUT_MS)
    assert dialog.is_running()  # the failure did not end the watch

    broken = table_rows(dialog)[0]
    assert broken["input"] == "broken.tif" and "broken.tif" in broken["reason"] and broken["reason"].endswith(".")
    assert broken["trust"] == ""
    assert "1 done, 1 failed" in dialog.status_label.text()
    assert landed == []  # "Show each new prediction in the window" was off

    stopped = stop(qtbot, dialog)
    assert {Path(row.input).name: row.status for row in stopped.rows} == {"broken.tif": "failed", "good.tif": "done"}
    assert (out / "batch_report.csv").is_file()
    dialog.close()


def test_cancel_abandons_the_file_being_predicted_and_writes_nothing_for_it(qtbot, tmp_path, prepared):
    package = make_diffusion_package(tmp_path / "models")
    model = SimpleNamespace(id=str(package.path), target="DNA", kind="diffusion")
    folder, out = tmp_path / "microscope", tmp_path / "out"
    folder.mkdir()
    dialog = WatchDialog(CoreBackend(), [model], selected_model=model.id, folder=str(folder), out_dir=str(out),
                         settings={"samples": 2, "steps": 200, "seed": 0})
    qtbot.addWidget(dialog)
    dialog.settle_spin.setValue(SETTLE_S)
    assert dialog.start()
    arrive(prepared[0], folder, "slow.tif")
    qtbot.waitUntil(lambda: any(s.startswith("predicting ") for s in statuses(dialog)), timeout=TIMEOUT_MS)
    with qtbot.waitSignal(dialog.watchFinished, timeout=60000) as blocker:
        dialog.cancel()
    stopped = blocker.args[0]
    assert [row.status for row in stopped.rows] == ["cancelled"]
    assert statuses(dialog) == ["cancelled"]
    assert not list(out.glob("*.ome.tif")) and (out / "batch_report.csv").is_file()
    qtbot.waitUntil(lambda: not dialog.is_running(), timeout=10000)


def test_what_is_missing_is_said_in_one_sentence_before_starting(qtbot, tmp_path):
    model = SimpleNamespace(id="test-unet", target="DNA", kind="unet")
    dialog = WatchDialog(CoreBackend(), [model])
    qtbot.addWidget(dialog)
    assert not dialog.start() and "folder to watch" in dialog.status_label.text()
    dialog.folder_edit.setText(str(tmp_path))
    assert not dialog.start() and "output folder" in dialog.status_label.text()
    dialog.out_edit.setText(str(tmp_path))
    assert not dialog.start() and "Tick at least one model" in dialog.status_label.text()
    dialog.model_list.set_checked(["test-unet"])
    assert not dialog.start() and "cannot be the watched folder itself" in dialog.status_label.text()
    assert not dialog.is_running()


def test_a_folder_that_does_not_exist_is_its_sentence(qtbot, tmp_path):
    package = make_unet_package(tmp_path / "models")
    model = SimpleNamespace(id=str(package.path), target="DNA", kind="unet")
    dialog = WatchDialog(CoreBackend(), [model], selected_model=model.id, folder=str(tmp_path / "nowhere"),
                         out_dir=str(tmp_path / "out"))
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.watchFinished, timeout=TIMEOUT_MS) as blocker:
        assert dialog.start()
    assert blocker.args[0] is None
    assert dialog.status_label.text() == (f"{tmp_path / 'nowhere'} is not a folder; give the folder the microscope "
                                          "writes into.")
    qtbot.waitUntil(lambda: dialog.start_button.isEnabled(), timeout=10000)


def test_the_table_keeps_arrival_order_and_one_row_per_file_and_model(qtbot, tmp_path):
    from labelfree_app.batch.report import BatchRow
    from labelfree_app.gui.watch.table import ArrivalTable

    table = ArrivalTable()
    qtbot.addWidget(table)
    table.reset(tmp_path)
    names = ["z.tif", "a.tif", "m.tif", "b.tif"]  # arrival order, not name order
    paths = [tmp_path / name for name in names]
    table.show_settling(paths)
    assert [table.item(r, INPUT).text() for r in range(table.rowCount())] == names
    table.show_settling(paths[1:])  # z.tif went away while settling
    table.show_started(str(paths[1]), "m1")
    table.show_progress(str(paths[1]), "m1", 3, 9, "tiles")
    assert table.statuses() == {"predicting": 1, "settling": 2}
    assert table.item(0, STATUS).text() == "predicting 3/9 tiles"
    table.show_row(BatchRow(0, str(paths[1]), "a.tif", "m1", status="done", seconds=1.5, expected_r=0.8,
                            expected_r_low=0.7, expected_r_high=0.9, trust="good"))
    assert table.item(0, TRUST).text() == "good: expected r 0.80 (0.70–0.90)"
    table.show_settling([paths[1], paths[2], paths[3]])  # a.tif written again under the same name
    table.show_started(str(paths[1]), "m1")
    assert [table.item(r, INPUT).text() for r in range(table.rowCount())] == ["a.tif", "m.tif", "b.tif"]
    table.show_row(BatchRow(0, str(paths[1]), "a.tif", "m1", status="cancelled", note="cancelled by the user"))
    table.show_stopped([])
    assert table.statuses() == {"cancelled": 1, "not yet predicted": 2}


def test_the_status_line_counts_what_happened():
    assert status_line("/data/run1", {}, 0) == "Watching /data/run1: waiting for images…"
    assert status_line("/d", {"done": 3, "failed": 1, "predicting": 1}, 1, "c.tif (2/4 tiles)") == (
        "Watching /d: 3 done, 1 failed, predicting c.tif (2/4 tiles), 1 settling…")


def test_the_dialog_settles_as_long_as_the_watch_does_by_default():
    from labelfree_app.batch.watch import DEFAULT_SETTLE_S, watch_folder
    import inspect

    assert watch_dialog.DEFAULT_SETTLE_S == DEFAULT_SETTLE_S
    assert inspect.signature(watch_folder).parameters["settle_s"].default == DEFAULT_SETTLE_S
