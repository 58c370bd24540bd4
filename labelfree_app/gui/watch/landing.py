"""The window shows the newest prediction as it lands: its input opens in the file list (no
questions asked) and is selected, and the result panels show the files the watch wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from labelfree_app.gui.files.file_list import DONE, FileList, OpenFile


class WindowLanding:
    """``show(input, SavedResult)``: open ``input`` through ``open_paths`` (the window's door for
    files, which reads it in the background and selects it) and make the result its own."""

    def __init__(self, file_list: FileList, open_paths: Callable[[Sequence[Path]], list[OpenFile]],
                 show_file: Callable[[OpenFile], Any]) -> None:
        self.file_list = file_list
        self.open_paths = open_paths
        self.show_file = show_file

    def show(self, input_path: Path, result: Any) -> OpenFile | None:
        """Open and select ``input_path`` and show ``result`` for it; None if it could not be opened."""
        input_path = Path(input_path)
        record = next((r for r in self.open_paths([input_path]) if r.path == input_path), None)
        if record is None:
            return None
        record.result = result
        record.extra.pop("saved_overviews", None)  # a file written again under the same name is read again
        if record.image is not None:  # already read: show it now (else the read shows it when done)
            self.file_list.set_state(record, DONE)
            if self.file_list.current() is record:
                self.show_file(record)
        return record
