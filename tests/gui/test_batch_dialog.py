"""File ▸ Batch export: the dialog runs the real batch off the GUI thread, reports failures, cancels.

Event-loop pauses during a batch are measured in benchmarks/gui_responsiveness.py, not asserted here."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PySide6.QtCore import QTimer

from labelfree_app.gui.backend import CoreBackend
from labelfree_app.gui.batch.dialog import BatchDialog, format_eta
from labelfree_app.io import read_image
from tests.factories import make_diffusion_package, make_unet_package, write_field


def _model(package) -> SimpleNamespace:
    return SimpleNamespace(id=str(package.path), target="DNA", kind=package.manifest.to_dict()["kind"])


@pytest.fixture()
def fields(tmp_path: Path) -> Path:
    folder = tmp_path / "fields"
    for i, name in enumerate(("a", "b", "c")):
        write_field(folder / f"{name}.tif", seed=i)
    (folder / "broken.tif").write_bytes(b"not an image")
    return folder


def _finish(qtbot, dialog: BatchDialog, timeout: int = 60000):
    with qtbot.waitSignal(dialog.batchFinished, timeout=timeout) as blocker:
        assert dialog.start()
    qtbot.waitUntil(lambda: not dialog.is_running(), timeout=10000)
    return blocker.args[0]


def table_rows(dialog: BatchDialog) -> list[list[str]]:
    return [[dialog.table.item(r, c).text() for c in range(dialog.table.columnCount())]
            for r in range(dialog.table.rowCount())]


def test_a_batch_runs_off_the_gui_thread_and_lists_every_result(qtbot, tmp_path, fields):
    package = make_unet_package(tmp_path / "models")
    out = tmp_path / "out"
    backend = CoreBackend()
    dialog = BatchDialog(backend, [_model(package)], selected_model=str(package.path), inputs=[fields],
                         out_dir=str(out))
    qtbot.addWidget(dialog)
    dialog.target_edit.setText("Hoechst")
    dialog.show()

    # The batch waits for the GUI thread to answer a timer: were it run on the GUI thread, it would hang.
    answered = threading.Event()
    batch_threads: list[int] = []
    real_run_batch = backend.run_batch

    def run_batch(*args, **kwargs):
        batch_threads.append(threading.get_ident())
        assert answered.wait(10.0), "the GUI thread did not run while the batch was busy"
        return (yield from real_run_batch(*args, **kwargs))

    backend.run_batch = run_batch
    QTimer.singleShot(20, answered.set)
    done = _finish(qtbot, dialog)
    assert batch_threads and batch_threads[0] != threading.get_ident()

    rows = {row[0]: row for row in table_rows(dialog)}
    assert {name: row[2] for name, row in rows.items()} == {
        "a.tif": "done", "b.tif": "done", "c.tif": "done", "broken.tif": "failed"}
    assert "broken.tif" in rows["broken.tif"][5] and "TIFF" in rows["broken.tif"][5]
    assert done.counts["done"] == 3 and done.counts["failed"] == 1
    predicted = read_image(out / f"a__{package.manifest.to_dict()['id']}.ome.tif").data
    assert predicted.shape == (1, 1, 64, 80)
    hoechst = read_image(fields / "a.tif").data[1]  # channels: Brightfield, Hoechst
    expected_r = float(np.corrcoef(predicted.ravel(), hoechst.ravel())[0, 1])
    assert float(rows["a.tif"][4]) == pytest.approx(expected_r, abs=0.0015)  # scored against Hoechst
    assert dialog.overall_bar.value() == dialog.overall_bar.maximum() == 4
    assert "3 done, 1 failed" in dialog.summary_label.text() and "batch_report.csv" in dialog.summary_label.text()
    assert dialog.start_button.isEnabled() and not dialog.cancel_button.isEnabled()

    # Running it again skips every finished output.
    _finish(qtbot, dialog)
    assert {row[2] for row in table_rows(dialog) if row[0] != "broken.tif"} == {"skipped"}


def test_cancel_stops_at_once_and_leaves_only_complete_files(qtbot, tmp_path):
    package = make_diffusion_package(tmp_path / "models")
    folder = tmp_path / "many"
    for i in range(6):
        write_field(folder / f"f{i}.tif", seed=i, shape=(96, 96))
    out = tmp_path / "out"
    dialog = BatchDialog(CoreBackend(), [_model(package)], selected_model=str(package.path), inputs=[folder],
                         out_dir=str(out), settings={"samples": 2, "steps": 40, "seed": 0})
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.batchFinished, timeout=120000) as blocker:
        assert dialog.start()
        qtbot.waitUntil(lambda: dialog.table.rowCount() >= 1, timeout=60000)
        dialog.cancel()
    done = blocker.args[0]
    qtbot.waitUntil(lambda: not dialog.is_running(), timeout=10000)
    statuses = [row.status for row in done.rows]
    assert "cancelled" in statuses and statuses.count("done") < 6 and done.stopped
    assert "Stopped" in dialog.summary_label.text()
    assert not list(out.glob(".*.part"))
    for path in out.glob("*.ome.tif"):
        assert read_image(path).data.size
    written = {p.name for p in out.glob("*.ome.tif")}
    for row in done.rows:
        if row.status != "done":
            assert not any(Path(o).name in written for o in row.outputs)


def test_what_is_missing_is_said_in_one_sentence_before_starting(qtbot, tmp_path):
    package = make_unet_package(tmp_path / "models")
    dialog = BatchDialog(CoreBackend(), [_model(package)])
    qtbot.addWidget(dialog)
    assert not dialog.start() and "Add the files" in dialog.summary_label.text()
    dialog.add_inputs([tmp_path])
    assert not dialog.start() and "Tick at least one model" in dialog.summary_label.text()
    dialog.set_models_checked([str(package.path)])
    assert not dialog.start() and "output folder" in dialog.summary_label.text()


def test_a_read_only_output_folder_is_reported_without_running_anything(qtbot, tmp_path, fields, monkeypatch):
    from labelfree_app.io import atomic

    package = make_unet_package(tmp_path / "models")
    out = tmp_path / "locked"
    out.mkdir()
    real_access = os.access
    monkeypatch.setattr(atomic.os, "access", lambda p, mode, *a, **k: False if Path(p) == out and mode & os.W_OK
                        else real_access(p, mode, *a, **k))
    dialog = BatchDialog(CoreBackend(), [_model(package)], selected_model=str(package.path), inputs=[fields],
                         out_dir=str(out))
    qtbot.addWidget(dialog)
    assert _finish(qtbot, dialog) is None
    assert "read-only" in dialog.summary_label.text() and dialog.table.rowCount() == 0
    assert list(out.iterdir()) == []


def test_the_menu_opens_the_dialog_with_the_open_files_and_current_model(qtbot, window, tiff_2d):
    from tests.gui.helpers import wait_loaded

    window.open_paths([tiff_2d])
    wait_loaded(qtbot, window)
    window.settings.set("export_folder", "/tmp/exports")
    window.menus.batch_export_action.trigger()
    dialog = next(d for d in window.dialogs if isinstance(d, BatchDialog))
    assert dialog.isVisible() and dialog.inputs() == [tiff_2d]
    assert dialog.checked_models() == [window.controls.model_id()]
    assert dialog.out_edit.text() == "/tmp/exports"


def test_eta_reads_like_a_clock():
    assert format_eta(None) == "ETA: estimating…"
    assert format_eta(75) == "ETA: 1 min 15 s"
    assert format_eta(3 * 3600 + 120) == "ETA: 3 h 02 min"


def test_dropped_files_join_the_inputs_but_not_while_a_batch_runs(qtbot, tmp_path, monkeypatch):
    from tests.gui.helpers import drop_files

    package = make_unet_package(tmp_path / "models")
    first, second = tmp_path / "a.tif", tmp_path / "b.tif"
    write_field(first, seed=1, shape=(32, 32))
    write_field(second, seed=2, shape=(32, 32))
    dialog = BatchDialog(CoreBackend(), [_model(package)])
    qtbot.addWidget(dialog)
    assert drop_files(dialog, [first]).isAccepted()
    assert dialog.inputs() == [first]
    monkeypatch.setattr(dialog, "is_running", lambda: True)
    assert not drop_files(dialog, [second]).isAccepted()
    assert dialog.inputs() == [first]
