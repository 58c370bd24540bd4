"""*Open output folder* that always says where the folder is: a file manager may be missing (a
server, a bare Linux desktop) and then opening does nothing visible."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication

Opener = Callable[[QUrl], bool]


def reveal_folder(folder: Path, say: Callable[[str], None], opener: Opener | None = None) -> bool:
    """Ask the desktop to open ``folder`` and ``say`` where it is in any case (the path is also put
    on the clipboard when nothing could open it). Returns whether a file manager took it."""
    folder = Path(folder)
    if not folder.is_dir():
        say(f"The output folder {folder} does not exist yet: nothing has been written there.")
        return False
    opened = bool((opener or QDesktopServices.openUrl)(QUrl.fromLocalFile(str(folder))))
    if opened:
        say(f"Output folder: {folder} (opening it in your file manager).")
    else:
        QGuiApplication.clipboard().setText(str(folder))
        say(f"Output folder: {folder}. No file manager could open it; the path is on the clipboard.")
    return opened
