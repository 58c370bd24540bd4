"""What one can do with a finished result: compare it with ground truth, export it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtWidgets import QFileDialog

from labelfree_app.errors import LabelFreeError
from labelfree_app.gui.backend import channel_count, channel_volume
from labelfree_app.gui.compare import CompareDialog, matching_channel
from labelfree_app.gui.export import export_result
from labelfree_app.gui.image_panel import plane_of
from labelfree_app.gui.viewers import first_channel
from labelfree_app.gui.worker import call_in_thread

if TYPE_CHECKING:
    from labelfree_app.gui.main_window import MainWindow


def _model_target(window: MainWindow, model_id: str) -> str:
    model = next((m for m in window.models if m.id == model_id), None)
    return str(model.target) if model is not None else ""


def ground_truth_for(window: MainWindow, record: Any) -> tuple[np.ndarray | None, str]:
    """The observed (Z, Y, X) volume to compare with, and where it came from."""
    if record.ground_truth is not None:
        return record.ground_truth, record.extra.get("ground_truth_source", "dropped file")
    image = record.image
    target = _model_target(window, record.result.model_id)
    index = matching_channel(getattr(image, "channel_names", ()), target, exclude=record.channel)
    if index is None:
        return None, ""
    names = list(image.channel_names)
    return channel_volume(image, index), f"channel '{names[index]}' of {record.path.name}"


def compare_current(window: MainWindow) -> CompareDialog | None:
    """Open the comparison for the shown file's result, or say what is missing."""
    record = window.file_list.current()
    if record is None or record.result is None:
        window.show_message("Run a prediction first, then compare it with the ground truth.")
        return None
    observed, source = ground_truth_for(window, record)
    if observed is None:
        target = _model_target(window, record.result.model_id) or "the model's target"
        window.show_message(
            f"{record.path.name} has no fluorescence channel for {target}; "
            "drop a fluorescence image onto the Prediction panel to compare with it."
        )
        return None
    predicted = first_channel(record.result.prediction)
    observed = first_channel(observed)
    panels = window.panels
    observed_plane = plane_of(observed, panels.z, panels.max_projection)
    predicted_plane = plane_of(predicted, panels.z, panels.max_projection)
    if observed_plane.shape != predicted_plane.shape:
        window.report_error(
            f"The ground truth ({source}) is {observed_plane.shape[1]}×{observed_plane.shape[0]} pixels but the "
            f"prediction is {predicted_plane.shape[1]}×{predicted_plane.shape[0]}; use an image of the same field."
        )
        return None
    where = "max projection" if panels.max_projection and observed.shape[0] > 1 else (
        f"z {panels.z}" if observed.shape[0] > 1 else ""
    )
    dialog = CompareDialog(observed_plane, predicted_plane, window.backend, where=where, source=source, parent=window)
    dialog.open()
    window.dialogs.append(dialog)
    return dialog


def load_ground_truth(window: MainWindow, path: Path) -> None:
    """Read a dropped fluorescence file as ground truth for the shown file, then compare."""
    record = window.file_list.current()
    if record is None or record.image is None:
        window.open_paths([path])
        return
    window.show_message(f"Reading {path.name} as ground truth…")

    def done(image: Any) -> None:
        index = 0
        if channel_count(image) > 1 and record.result is not None:
            target = _model_target(window, record.result.model_id)
            found = matching_channel(getattr(image, "channel_names", ()), target, exclude=-1)
            index = found if found is not None else 0
        record.ground_truth = channel_volume(image, index)
        record.extra["ground_truth_source"] = path.name
        window.show_message(f"{path.name} is the ground truth for {record.path.name}.")
        if record.result is not None and window.file_list.current() is record:
            compare_current(window)

    def failed(exc: BaseException) -> None:
        window.report_error(str(exc) if isinstance(exc, LabelFreeError) else f"{path.name} could not be read ({exc}).")

    call_in_thread(lambda: window.backend.read_image(path), done, failed)


def choose_export_folder(window: MainWindow) -> Path | None:
    chosen = QFileDialog.getExistingDirectory(window, "Export folder", window.settings.get("export_folder"))
    if not chosen:
        return None
    window.settings.set("export_folder", chosen)
    window.settings.save()
    return Path(chosen)


def export_current(window: MainWindow, folder: Path | None = None) -> bool:
    """Export the shown result in the background to ``folder`` (default: remembered, asked once).

    Returns whether an export started; ``window.exported`` fires with the written paths.
    """
    record = window.file_list.current()
    if record is None or record.result is None:
        window.show_message("Nothing to export yet: run a prediction first.")
        return False
    if folder is None:
        remembered = window.settings.get("export_folder")
        folder = Path(remembered) if remembered and Path(remembered).is_dir() else choose_export_folder(window)
        if folder is None:
            return False
    result = record.result
    frames = result.frames if result.frames is not None else record.extra.get("recorded_frames")
    panels_image = window.panels.grab().toImage()  # QImage: safe to save from another thread
    window.show_message(f"Exporting to {folder}…")

    inputs = [Path(p) for p in record.extra.get("plane_paths") or ()] or [record.path]
    pixel_size_um = getattr(record.image, "pixel_size_um", None)

    def work() -> list[Path]:
        return export_result(
            folder, inputs, result, window.backend, pixel_size_um=pixel_size_um, frames=frames,
            save_panels_png=lambda tmp: panels_image.save(str(tmp), "PNG"),
        )

    def done(written: list[Path]) -> None:
        window.settings.set("export_folder", str(folder))
        window.show_message(f"Exported {len(written)} files to {folder}.")
        window.exported.emit(written)

    def failed(exc: BaseException) -> None:
        window.report_error(str(exc) if isinstance(exc, LabelFreeError) else f"Export failed ({exc}).", isinstance(exc, LabelFreeError))

    call_in_thread(work, done, failed)
    return True
