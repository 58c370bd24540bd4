"""Opening images in the window: drops, File ▸ Open / Open folder / Open planes as z-stack / recent
files, and reading each file in the background into its ``OpenFile`` entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from PySide6.QtWidgets import QFileDialog

from labelfree_app.errors import LabelFreeError
from labelfree_app.gui.backend import expand_paths
from labelfree_app.gui.files import plane_series
from labelfree_app.gui.files.drops import FileDrops
from labelfree_app.gui.files.file_list import DONE, FAILED, IMAGE_FILTER, LOADED, LOADING, OpenFile
from labelfree_app.gui.files.open_plan import plan_opening
from labelfree_app.gui.menus import fill_recent_menu
from labelfree_app.gui.worker import call_in_thread
from labelfree_app.io.reading import natural_sort_key

UNREADABLE = "This file could not be read — hover it in the list to see why"


class FileOpening(FileDrops):
    """Mixin of the main window (placed before ``QMainWindow``). It uses the window's ``backend``,
    ``settings``, ``file_list``, ``panels``, ``menus``, ``show_message`` and ``show_file``."""

    backend: Any
    settings: Any
    file_list: Any
    panels: Any
    menus: Any
    show_message: Callable[..., None]
    show_file: Callable[[Any], None]

    def files_dropped(self, paths: list[Path]) -> None:
        self.open_inputs(paths)

    def open_dialog(self) -> None:
        chosen, _ = QFileDialog.getOpenFileNames(self, "Open images", self.settings.get("last_folder"), IMAGE_FILTER)
        if chosen:
            self.open_inputs([Path(p) for p in chosen])

    def open_folder_dialog(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Open folder", self.settings.get("last_folder"))
        if chosen:
            self.open_inputs([Path(chosen)])

    def open_inputs(self, paths: Sequence[Path], *, ask: bool = True) -> list[OpenFile]:
        """Every door's way in (drop, File ▸ Open, Open folder, the command line), as ``open_plan``
        plans it: a plane series becomes one z-stack if the user says so (without ``ask``: always),
        the other files open one by one in natural order, fluorescence-named files are set aside
        with a word in the status bar. Shows the first entry."""
        files = expand_paths(paths)
        if not files:
            self.show_message("No TIFF or PNG images were found in what was opened.")
            return []
        plan = plan_opening(files)
        records: list[OpenFile] = []
        singles = list(plan.singles)
        for stack in plan.stacks:
            if not ask or self.ask_open_as_stack(len(stack)):
                records.append(self.open_plane_stack(stack))
            else:
                singles.extend(stack)
        if singles:
            records += self.open_paths(sorted(singles, key=natural_sort_key))
        if records:
            self.file_list.select(records[0])
        if plan.note():
            self.show_message(plan.note())
        return records

    def ask_open_as_stack(self, count: int) -> bool:
        """Asks the user (a hook tests replace)."""
        return plane_series.ask_open_as_stack(self, count)

    def open_stack_dialog(self) -> OpenFile | None:
        """File ▸ Open planes as z-stack: the chosen files become one entry."""
        chosen = plane_series.choose_planes(self, self.settings.get("last_folder"))
        return self.open_plane_stack(chosen) if chosen else None

    def open_plane_stack(self, paths: Sequence[Path]) -> OpenFile:
        """One list entry for single-plane files, read together in the background as one z-stack."""

        def read(record: OpenFile, planes: list[Path]) -> None:
            self.load_record(record, lambda: self.backend.read_plane_series(planes))

        record = plane_series.open_plane_stack(self.file_list, paths, read)
        self.settings.set("last_folder", str(record.path.parent))
        return record

    def open_paths(self, paths: Sequence[Path]) -> list[OpenFile]:
        """Add files (folders expand to their images), read them in the background, show the first."""
        files = expand_paths(paths)
        if not files:
            self.show_message("No TIFF or PNG images were found in what was opened.")
            return []
        records = []
        for path in files:
            existing = self.file_list.find(path)
            record = existing or self.file_list.add(path)
            records.append(record)
            if existing is None or record.state == FAILED:
                self.load_record(record)
            self._remember_recent(path)
        self.settings.set("last_folder", str(files[0].parent))
        self.file_list.select(records[0])
        return records

    def load_record(self, record: OpenFile, read: Callable[[], Any] | None = None) -> None:
        """Read ``record`` (its file, or with ``read``) in the background and show it when done."""
        self.file_list.set_state(record, LOADING)
        path = record.path
        read = read or (lambda: self.backend.read_image(path))

        def done(image: Any) -> None:
            record.image = image
            try:
                record.channel = self.backend.transmitted_channel(image)
            except LabelFreeError:
                record.channel = 0
            self.file_list.set_state(record, DONE if record.result is not None else LOADED)  # a watch's result
            if self.file_list.current() is record:
                self.show_file(record)

        def failed(exc: BaseException) -> None:
            reason = str(exc) if isinstance(exc, LabelFreeError) else f"{record.name} could not be read ({exc})."
            self.file_list.set_state(record, FAILED, reason)
            self.show_message(reason)
            if self.file_list.current() is record:
                self.panels.input_panel.clear(UNREADABLE)
                self.panels.clear_results()

        call_in_thread(read, done, failed, owner=self)  # type: ignore[arg-type]

    def _remember_recent(self, path: Path) -> None:
        self.settings.add_recent_file(path)
        self._fill_recent_menu()

    def _fill_recent_menu(self) -> None:
        fill_recent_menu(self.menus.recent_menu, list(self.settings.get("recent_files")),
                         lambda path: self.open_paths([path]))
