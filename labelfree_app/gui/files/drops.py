"""Dropping files onto a widget: one handler for the window, the viewers, the Train lists and the batch dialog."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def paths_from_mime(event: Any) -> list[Path]:
    """The local files of a drag or drop event (none for text, web links or an empty drag)."""
    mime = event.mimeData()
    if mime is None or not mime.hasUrls():
        return []
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]


class FileDrops:
    """Mixin placed before the Qt widget class: accepts dragged local files and hands them to
    ``files_dropped``; ``accepts_drops`` may refuse them for a while (e.g. during a run)."""

    def accepts_drops(self) -> bool:
        return True

    def files_dropped(self, paths: list[Path]) -> None:
        raise NotImplementedError

    def dragEnterEvent(self, event: Any) -> None:  # noqa: N802 (Qt name)
        self._offer(event)

    def dragMoveEvent(self, event: Any) -> None:  # noqa: N802
        self._offer(event)

    def dropEvent(self, event: Any) -> None:  # noqa: N802
        dropped = paths_from_mime(event) if self.accepts_drops() else []
        if dropped:
            event.acceptProposedAction()
            self.files_dropped(dropped)
        else:
            event.ignore()

    def _offer(self, event: Any) -> None:
        if self.accepts_drops() and paths_from_mime(event):
            event.acceptProposedAction()
        else:
            event.ignore()
