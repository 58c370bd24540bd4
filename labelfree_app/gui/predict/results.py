"""What one can do with a finished result: compare it with ground truth, export it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from labelfree_app.errors import LabelFreeError
from labelfree_app.gui.backend import Backend, channel_count, channel_volume
from labelfree_app.gui.files.file_list import FileList, OpenFile
from labelfree_app.gui.predict.export import existing_exports, export_result, numbered_stem
from labelfree_app.gui.settings import GuiSettings
from labelfree_app.gui.streamed_run import SavedResult
from labelfree_app.gui.viewer.compare import CompareDialog, matching_channel
from labelfree_app.gui.viewer.image_panel import plane_of
from labelfree_app.gui.viewer.panel_grid import PanelGrid, first_channel
from labelfree_app.gui.worker import call_in_thread


REPLACE, NUMBER, CANCEL = "replace", "number", "cancel"  # answers to "these files exist"


class Messages(Protocol):
    """Where a sentence for the user goes: the status bar, or a dialog for an error."""

    def show_message(self, text: str, timeout_ms: int = 0) -> None: ...

    def report_error(self, text: str, is_user_error: bool = True) -> None: ...


class ResultActions(QObject):
    """Compare and Export for the shown file's result.

    ``model_target(model_id)`` names a model's target ('' if unknown); dialogs open on ``parent``
    and are kept alive in ``dialogs``; ``exported`` fires with the paths an export wrote.
    """

    exported = Signal(list)

    def __init__(
        self,
        parent: QWidget,
        backend: Backend,
        files: FileList,
        panels: PanelGrid,
        settings: GuiSettings,
        messages: Messages,
        model_target: Callable[[str], str],
        dialogs: list[QWidget],
    ) -> None:
        super().__init__(parent)
        self.parent_widget = parent
        self.pick_ground_truth: Callable[[Path], Path | None] = self._ask_ground_truth_file  # tests replace it
        self.backend = backend
        self.files = files
        self.panels = panels
        self.settings = settings
        self.messages = messages
        self.model_target = model_target
        self.dialogs = dialogs

    def ground_truth_for(self, record: OpenFile) -> tuple[np.ndarray | None, str]:
        """The observed (Z, Y, X) volume to compare with, and where it came from."""
        if record.ground_truth is not None:
            return record.ground_truth, record.extra.get("ground_truth_source", "dropped file")
        image = record.image
        target = self.model_target(record.result.model_id)
        index = matching_channel(getattr(image, "channel_names", ()), target, exclude=record.channel)
        if index is None:
            return None, ""
        names = list(image.channel_names)
        return channel_volume(image, index), f"channel '{names[index]}' of {record.path.name}"

    def compare_current(self) -> CompareDialog | None:
        """Open the comparison for the shown file's result, or say what is missing."""
        record = self.files.current()
        if record is None or record.result is None:
            self.messages.show_message("Run a prediction first, then compare it with the ground truth.")
            return None
        if isinstance(record.result, SavedResult):  # the comparison holds both images in memory
            self.messages.report_error(
                f"{record.path.name} is too large to compare in the window; run `labelfree batch` on it with "
                "--target-channel to score the prediction against its fluorescence channel.")
            return None
        observed, source = self.ground_truth_for(record)
        if observed is None:
            target = self.model_target(record.result.model_id) or "the model's target"
            self.messages.show_message(
                f"{record.path.name} has no fluorescence channel for {target}; choose a fluorescence image of "
                "the same field (or drop one onto the Prediction panel) to compare with it."
            )
            chosen = self.pick_ground_truth(record.path)
            if chosen is not None:
                self.load_ground_truth(chosen)  # compares once read
            return None
        predicted = first_channel(record.result.prediction)
        observed = first_channel(observed)
        panels = self.panels
        observed_plane = plane_of(observed, panels.z, panels.max_projection)
        predicted_plane = plane_of(predicted, panels.z, panels.max_projection)
        if observed_plane.shape != predicted_plane.shape:
            self.messages.report_error(
                f"The ground truth ({source}) is {observed_plane.shape[1]}×{observed_plane.shape[0]} pixels but the "
                f"prediction is {predicted_plane.shape[1]}×{predicted_plane.shape[0]}; use an image of the same field."
            )
            return None
        where = "max projection" if panels.max_projection and observed.shape[0] > 1 else (
            f"z {panels.z}" if observed.shape[0] > 1 else ""
        )
        dialog = CompareDialog(observed_plane, predicted_plane, self.backend, where=where, source=source,
                               parent=self.parent_widget)
        dialog.open()
        self.dialogs.append(dialog)
        return dialog

    def load_ground_truth(self, path: Path) -> bool:
        """Read a dropped fluorescence file as ground truth for the shown file, then compare.

        Returns False (and reads nothing) when no image is shown to compare with.
        """
        record = self.files.current()
        if record is None or record.image is None:
            return False
        self.messages.show_message(f"Reading {path.name} as ground truth…")

        def done(image: Any) -> None:
            index = 0
            if channel_count(image) > 1 and record.result is not None:
                target = self.model_target(record.result.model_id)
                found = matching_channel(getattr(image, "channel_names", ()), target, exclude=-1)
                index = found if found is not None else 0
            record.ground_truth = channel_volume(image, index)
            record.extra["ground_truth_source"] = path.name
            self.messages.show_message(f"{path.name} is the ground truth for {record.path.name}.")
            if record.result is not None and self.files.current() is record:
                self.compare_current()

        def failed(exc: BaseException) -> None:
            self.messages.report_error(
                str(exc) if isinstance(exc, LabelFreeError) else f"{path.name} could not be read ({exc})."
            )

        call_in_thread(lambda: self.backend.read_image(path), done, failed, owner=self.panels)
        return True

    def _ask_ground_truth_file(self, beside: Path) -> Path | None:
        chosen, _ = QFileDialog.getOpenFileName(self.parent_widget, "Ground truth: a fluorescence image of this field",
                                                str(beside.parent), "Images (*.tif *.tiff *.png);;All files (*)")
        return Path(chosen) if chosen else None

    def choose_export_folder(self) -> Path | None:
        chosen = QFileDialog.getExistingDirectory(self.parent_widget, "Export folder",
                                                  self.settings.get("export_folder"))
        if not chosen:
            return None
        self.settings.set("export_folder", chosen)
        self.settings.save()
        return Path(chosen)

    def export_folder(self) -> Path | None:
        """The export folder the user picked (asked once, or again when it is gone); None: cancelled."""
        remembered = self.settings.get("export_folder")
        return Path(remembered) if remembered and Path(remembered).is_dir() else self.choose_export_folder()

    def ask_replace(self, folder: Path, taken: list[Path]) -> str:
        """Files of this export exist in ``folder``: REPLACE them, NUMBER the new ones, or CANCEL."""
        box = QMessageBox(QMessageBox.Icon.Question, "Export result",
                          f"{len(taken)} files of this export already exist in {folder} (e.g. {taken[0].name}). "
                          "Replace them, or keep both and number the new files?", parent=self.parent_widget)
        buttons = {box.addButton("Keep both (number the new files)", QMessageBox.ButtonRole.AcceptRole): NUMBER,
                   box.addButton("Replace", QMessageBox.ButtonRole.DestructiveRole): REPLACE,
                   box.addButton(QMessageBox.StandardButton.Cancel): CANCEL}
        box.exec()
        return buttons.get(box.clickedButton(), CANCEL)

    def export_current(self, folder: Path | None = None) -> bool:
        """Export the shown result in the background to ``folder`` (default: the export folder the user
        picked, asked once); files already there are replaced or numbered only as the user answers.

        Returns whether an export started; ``exported`` fires with the written paths.
        """
        record = self.files.current()
        if record is None or record.result is None:
            self.messages.show_message("Nothing to export yet: run a prediction first.")
            return False
        folder = folder if folder is not None else self.export_folder()
        if folder is None:
            return False
        folder = Path(folder)
        result = record.result
        frames = getattr(result, "frames", None)
        frames = frames if frames is not None else record.extra.get("recorded_frames")
        inputs = [Path(p) for p in record.extra.get("plane_paths") or ()] or [record.path]
        pixel_size_um = getattr(record.image, "pixel_size_um", None)
        taken = existing_exports(folder, inputs[0], result.model_id) if folder.is_dir() else []
        answer = self.ask_replace(folder, taken) if taken else REPLACE
        if answer == CANCEL:
            self.messages.show_message(f"Export cancelled: nothing in {folder} was replaced.")
            return False
        stem = numbered_stem(folder, inputs[0], result.model_id) if answer == NUMBER else None
        panels_image = self.panels.grab_without_crosshair()  # QImage: safe to save from another thread
        self.messages.show_message(f"Exporting to {folder}…")

        def work() -> list[Path]:
            return export_result(
                folder, inputs, result, self.backend, pixel_size_um=pixel_size_um, frames=frames,
                save_panels_png=lambda tmp: panels_image.save(str(tmp), "PNG"), stem=stem,
            )

        def done(written: list[Path]) -> None:
            self.settings.set("export_folder", str(folder))
            self.messages.show_message(f"Exported {len(written)} files to {folder}.")
            self.exported.emit(written)

        def failed(exc: BaseException) -> None:
            user_error = isinstance(exc, LabelFreeError)
            self.messages.report_error(str(exc) if user_error else f"Export failed ({exc}).", user_error)

        call_in_thread(work, done, failed, owner=self.panels)
        return True
