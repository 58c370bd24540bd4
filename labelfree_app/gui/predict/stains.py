"""Several stains at once: tick models that fit the shown image, run them one after the other on the
image already read (through an ``EventWorker``), show their colour composite next to the panels, and
export one multi-channel OME-TIFF (``batch.merge.save_merged``, the file `labelfree predict -m A -m B
--merge` writes) plus the composite as a PNG."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (QGroupBox, QHBoxLayout, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout,
                               QWidget)

from labelfree_app.core.events import PredictionResult
from labelfree_app.errors import LabelFreeError
from labelfree_app.gui.backend import Backend
from labelfree_app.gui.files.file_list import FileList, OpenFile
from labelfree_app.gui.generator_worker import DONE
from labelfree_app.gui.predict.run_controls import RunControls
from labelfree_app.gui.viewer.composite import CompositePanel
from labelfree_app.gui.viewer.panel_grid import PanelGrid, first_channel
from labelfree_app.gui.worker import EventWorker, call_in_thread

STAINS = "stains"  # OpenFile.extra key: the record's ``StainResults``


@dataclass(frozen=True)
class StainResults:
    """One image's predictions by several models, in the order ticked, and their manifests."""

    model_ids: tuple[str, ...]
    results: tuple[PredictionResult, ...]
    manifests: tuple[dict[str, Any], ...]


def export_stains(folder: Path, inputs: Sequence[Path], stains: StainResults, rgb: np.ndarray | None, *,
                  pixel_size_um: dict[str, float] | None = None) -> list[Path]:
    """Write ``<stem>__A+B.ome.tif`` (the CLI's --merge file) and ``<stem>__A+B__composite.png``."""
    from labelfree_app.batch.merge import save_merged
    from labelfree_app.core.composite import write_composite_png
    from labelfree_app.export import merged_id, output_paths

    files = [Path(p) for p in inputs]
    path = output_paths(files[0], merged_id(stains.model_ids), Path(folder)).prediction
    written = [save_merged(list(stains.results), list(stains.manifests), files, path, pixel_size_um=pixel_size_um)]
    if rgb is not None:
        png = path.with_name(path.name[: -len(".ome.tif")] + "__composite.png")
        written.append(write_composite_png(png, rgb, protected_paths=files))
    return written


class StainsBox(QGroupBox):
    """The models that fit the shown image, each with a tick box, and Run stains / Export stains."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Several stains", parent)
        self.setToolTip("Tick two or more models: each runs on the image, and the Composite panel shows them "
                        "in colour; Export stains writes one multi-channel OME-TIFF")
        self.list = QListWidget()
        self.list.setMaximumHeight(110)
        self.run_button = QPushButton("Run stains")
        self.export_button = QPushButton("Export stains…")
        self.export_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addLayout(buttons)

    def set_models(self, models: Sequence[Any], fit_problem: Callable[[Any], str | None]) -> None:
        """List ``models``; those that do not fit the image are greyed with the reason; ticks stay."""
        kept = set(self.ticked())
        self.list.clear()
        for model in models:
            problem = fit_problem(model)
            item = QListWidgetItem(f"{model.target} — {model.id}")
            item.setData(Qt.ItemDataRole.UserRole, model.id)
            fits = problem is None
            item.setFlags(Qt.ItemFlag.ItemIsUserCheckable | (Qt.ItemFlag.ItemIsEnabled if fits else Qt.ItemFlag(0)))
            item.setCheckState(Qt.CheckState.Checked if fits and model.id in kept else Qt.CheckState.Unchecked)
            item.setToolTip(f"{model.id} {problem}." if problem else f"{model.name}: predicts {model.target}")
            self.list.addItem(item)

    def ticked(self) -> list[str]:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())
                if self.list.item(i).checkState() == Qt.CheckState.Checked]

    def tick(self, model_ids: Sequence[str]) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            wanted = item.data(Qt.ItemDataRole.UserRole) in model_ids and bool(item.flags() & Qt.ItemFlag.ItemIsEnabled)
            item.setCheckState(Qt.CheckState.Checked if wanted else Qt.CheckState.Unchecked)


class StainsFeature(QObject):
    """Wires the Stains box (in the Run panel) and the Composite panel (right of the four panels).

    ``message(text)``, ``failed(text, is_user)`` (to ``messages``' status bar and dialogs when given);
    ``finished(status)`` after a run; ``exported(paths)``. ``export_folder()`` asks where to export.
    """

    message = Signal(str)
    failed = Signal(str, bool)
    finished = Signal(str)
    exported = Signal(list)

    def __init__(self, backend: Backend, controls: RunControls, files: FileList, panels: PanelGrid,
                 export_folder: Callable[[], Path | None], messages: Any = None) -> None:
        super().__init__(controls)
        self.backend, self.controls, self.files, self.panels = backend, controls, files, panels
        self.export_folder = export_folder
        self.box = StainsBox()
        layout = controls.layout()
        layout.insertWidget(layout.count() - 1, self.box)  # above the Run panel's closing stretch
        self.composite = CompositePanel()
        self.composite.setVisible(False)
        panels.add_side_panel(self.composite, self.composite.panel)
        self.worker: EventWorker | None = None
        self._running: tuple[OpenFile, list[str], list[PredictionResult]] | None = None
        controls.modelChanged.connect(self.refresh_models)
        files.currentFileChanged.connect(self.show)
        panels.planeChanged.connect(lambda: self.composite.show_plane(panels.z, panels.max_projection))
        self.box.run_button.clicked.connect(self.run)
        self.box.export_button.clicked.connect(lambda: self.export_current())
        if messages is not None:  # the window's status bar and error dialogs (``results.Messages``)
            self.message.connect(messages.show_message)
            self.failed.connect(messages.report_error)

    def refresh_models(self, *_: Any) -> None:
        self.box.set_models(self.controls.models(), self.controls.fit_problem)

    def is_running(self) -> bool:
        return self.worker is not None and self.worker.is_running()

    def run(self) -> bool:
        """Run every ticked model on the shown image, one after the other; False when it cannot start."""
        record, ids = self.files.current(), self.box.ticked()
        if record is None or record.image is None:
            self.message.emit("Open an image first, then tick the stains to predict.")
            return False
        if len(ids) < 2 or self.is_running():
            self.message.emit("Tick two or more stains that fit this image." if len(ids) < 2
                              else "The stains are being predicted; wait for them to finish.")
            return False
        settings = {**self.controls.settings(), "channel": record.channel}
        image = record.image

        def events() -> Iterator[Any]:
            for model_id in ids:  # one model at a time, all on the image the window read once
                yield from self.backend.run(image, model_id, dict(settings))

        self._running = (record, ids, [])
        self.worker = EventWorker(events)
        self.worker.progress.connect(lambda e: self.controls.show_progress(e.stage, e.done, e.total, e.message))
        self.worker.result.connect(lambda result: self._running[2].append(result) if self._running else None)
        self.worker.errored.connect(self.failed)
        self.worker.finished.connect(self._on_finished)
        self.box.run_button.setEnabled(False)
        self.message.emit(f"Predicting {len(ids)} stains of {record.name}: {', '.join(ids)}…")
        self.worker.start()
        return True

    def _on_finished(self, status: str) -> None:
        record, ids, results = self._running or (None, [], [])
        self._running = None
        self.box.run_button.setEnabled(True)
        if record is not None and status == DONE and len(results) == len(ids):
            try:
                manifests = tuple(self.backend.model_manifest(model_id) for model_id in ids)
            except LabelFreeError as exc:
                self.failed.emit(str(exc), True)
            else:
                record.extra[STAINS] = StainResults(tuple(ids), tuple(results), manifests)
                self.message.emit(f"{record.name}: {len(ids)} stains predicted; the Composite panel shows them.")
                if self.files.current() is record:
                    self.show(record)
        self.finished.emit(status)

    def show(self, record: OpenFile | None) -> None:
        """Show ``record``'s stains in the Composite panel, or hide the panel when it has none."""
        stains = record.extra.get(STAINS) if record is not None else None
        self.box.export_button.setEnabled(stains is not None)
        self.composite.setVisible(stains is not None)
        if stains is None:
            self.composite.clear()
            return
        from labelfree_app.export import merged_channel_names

        volumes = [first_channel(np.asarray(r.prediction)) for r in stains.results]
        self.composite.z, self.composite.max_projection = self.panels.z, self.panels.max_projection
        self.composite.set_stains(merged_channel_names(list(stains.manifests)), volumes)
        self.composite.set_underlay(self.panels.input_panel.volume, self.panels.input_panel.levels)

    def export_current(self, folder: Path | None = None) -> bool:
        """Export the shown file's stains in the background; ``exported`` fires with the paths."""
        record = self.files.current()
        stains = record.extra.get(STAINS) if record is not None else None
        if stains is None:
            self.message.emit("Nothing to export yet: tick two or more stains and press Run stains.")
            return False
        folder = folder or self.export_folder()
        if folder is None:
            return False
        inputs = [Path(p) for p in record.extra.get("plane_paths") or ()] or [record.path]
        rgb, pixel_size = self.composite.rgb(), getattr(record.image, "pixel_size_um", None)

        def failed(exc: BaseException) -> None:
            user_error = isinstance(exc, LabelFreeError)
            self.failed.emit(str(exc) if user_error else f"Export failed ({exc}).", user_error)

        def done(written: list[Path]) -> None:
            self.message.emit(f"Exported {len(written)} files to {folder}.")
            self.exported.emit(written)

        call_in_thread(lambda: export_stains(Path(folder), inputs, stains, rgb, pixel_size_um=pixel_size), done, failed)
        return True
