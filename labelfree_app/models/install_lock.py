"""One install at a time into the user's model folder (``io.folder_lock``, as batch output folders have).

Two ``labelfree models install`` of the same id at once would both see the id free, both copy and race
on the rename; under this lock the second waits for the first, then finds the id taken and says so.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from labelfree_app.errors import ModelError
from labelfree_app.io.atomic import write_error
from labelfree_app.io.folder_lock import FolderLock, LockOwner

LOCK_NAME = ".labelfree-install.lock"
WAIT_S = 300.0  # an install (checks, smoke test, copy) takes seconds; past this the other one is stuck
POLL_S = 0.1


class ModelFolderBusyError(ModelError):
    """Another LabelFree process is installing or removing a model in the same folder."""


class InstallLock(FolderLock):
    """The lock on the user's model folder for one install or removal."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, LOCK_NAME)

    def _busy(self, owner: LockOwner) -> ModelFolderBusyError:
        who = f" (pid {owner.pid}{' on ' + owner.host if owner.host else ''})" if owner.pid is not None else ""
        return ModelFolderBusyError(f"Another LabelFree process{who} is installing a model into {self.folder}; "
                                    f"wait for it to finish, or delete {self.path} if it no longer runs.",
                                    path=self.folder)


@contextmanager
def installing(folder: Path, *, wait_s: float = WAIT_S) -> Iterator[None]:
    """Hold the model folder's install lock for the block, waiting up to ``wait_s`` for another install."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(exc, Path(folder)) from exc
    lock = InstallLock(folder)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            lock.acquire()
            break
        except ModelFolderBusyError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(POLL_S)
    try:
        yield
    finally:
        lock.release()
