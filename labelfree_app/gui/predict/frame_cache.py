"""The frames the T slider shows: the most recently used are kept, and playback reads ahead.

A frame asked for directly (the slider dragged, a new result) is read at once (``get``). While the
series plays, the frames after the shown one are read on the thread pool (``ready``), and the bar
moves on only to a frame whose reads are in, so the GUI thread never waits on the disk and a slow
disk or a busy CPU lowers the frame rate instead of freezing the window.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Hashable, Sequence

import numpy as np
from PySide6.QtCore import QObject

from labelfree_app.gui.worker import call_in_thread

Read = tuple[Hashable, Callable[[], Any]]  # a frame's key and how to read it


class FrameCache:
    """Frames by key, at most ``limit()`` of them (least recently used dropped first).

    ``owner``: the widget the frames are shown in; reads that come back after it was deleted are dropped."""

    def __init__(self, limit: Callable[[], int], owner: QObject | None = None) -> None:
        self._limit, self._owner = limit, owner
        self._frames: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._reading: set[Hashable] = set()
        self._failed: set[Hashable] = set()  # read ahead and failed: ``get`` reads them again and says why
        self._generation = 0  # bumped by ``clear``: reads in flight then are dropped when they come back

    def __len__(self) -> int:
        return len(self._frames)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._frames

    def clear(self) -> None:
        self._frames.clear()
        self._reading.clear()
        self._failed.clear()
        self._generation += 1

    def get(self, key: Hashable, read: Callable[[], Any]) -> np.ndarray:
        """The frame ``key``, read now unless it is kept."""
        if key in self._frames:
            self._frames.move_to_end(key)
            return self._frames[key]
        self._failed.discard(key)
        return self._put(key, read())

    def ready(self, reads: Sequence[Read], ahead: Sequence[Read] = ()) -> bool:
        """Whether every frame of ``reads`` is kept (or failed, for ``get`` to say why); the missing
        ones, then those of ``ahead``, are read on the thread pool."""
        waiting = [(key, read) for key, read in reads if key not in self._frames and key not in self._failed]
        for key, read in [*waiting, *ahead]:
            self._read_in_background(key, read)
        return not waiting

    def _read_in_background(self, key: Hashable, read: Callable[[], Any]) -> None:
        if key in self._frames or key in self._reading or key in self._failed:
            return
        self._reading.add(key)
        generation = self._generation

        def done(value: np.ndarray) -> None:
            if generation == self._generation:
                self._reading.discard(key)
                self._put(key, value)

        def failed(_: BaseException) -> None:
            if generation == self._generation:
                self._reading.discard(key)
                self._failed.add(key)

        call_in_thread(lambda: np.asarray(read(), dtype=np.float32), done, failed, owner=self._owner)

    def _put(self, key: Hashable, value: Any) -> np.ndarray:
        frame = np.asarray(value, dtype=np.float32)
        self._frames[key] = frame
        self._frames.move_to_end(key)
        while len(self._frames) > max(1, self._limit()):
            self._frames.popitem(last=False)
        return frame
