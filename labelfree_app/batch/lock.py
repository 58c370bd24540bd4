"""One batch at a time per output folder (``io.folder_lock``: a lock file with the owner's pid and host).

A lock whose owner is gone is taken over, and the caller is told, so it can clean the dead batch's temp
files. Shards of one batch (``--shard K/N``) lock separately, since a job array runs them side by side on the
same folder.
"""

from __future__ import annotations

import socket
from pathlib import Path

from labelfree_app.errors import LabelFreeError
from labelfree_app.io.folder_lock import UNREADABLE_LOCK_GRACE_S, FolderLock, LockOwner, owner_alive

__all__ = ["LOCK_NAME", "UNREADABLE_LOCK_GRACE_S", "BatchBusyError", "BatchLock", "LockOwner", "lock_name",
           "owner_alive"]

LOCK_NAME = ".labelfree-batch.lock"


class BatchBusyError(LabelFreeError):
    """Another batch is writing to the same output folder."""


def lock_name(report_name: str = "batch_report") -> str:
    """``.labelfree-batch.lock``, or ``.labelfree-batch.shard-K-of-N.lock`` for one shard."""
    _, _, shard = report_name.partition(".")
    return f".labelfree-batch.{shard}.lock" if shard else LOCK_NAME


class BatchLock(FolderLock):
    """The lock on ``folder`` for one batch (or one shard); ``acquire`` then ``release``."""

    def __init__(self, folder: Path, report_name: str = "batch_report") -> None:
        super().__init__(folder, lock_name(report_name))

    def _busy(self, owner: LockOwner) -> BatchBusyError:
        folder = self.folder
        if owner.pid is None:
            message = (f"Another LabelFree batch is writing to {folder}; wait for it to finish or choose another "
                       "output folder.")
        elif owner.host and owner.host != socket.gethostname():
            message = (f"Another LabelFree batch (pid {owner.pid} on {owner.host}) is writing to {folder}; wait "
                       f"for it to finish, choose another output folder, or delete {self.path} if it no longer "
                       "runs.")
        else:
            message = (f"Another LabelFree batch (pid {owner.pid}) is writing to {folder}; wait for it to finish "
                       "or choose another output folder.")
        return BatchBusyError(message, path=folder)
