"""One batch at a time per output folder: a lock file holding the owner's pid and host.

The lock is created atomically (``O_CREAT | O_EXCL``). A lock whose owner is gone (same host, pid
not running, or running but started at another time: the pid was reused) is stale and is taken
over; the caller is told, so it can clean the dead batch's temp files. A lock from another host
cannot be checked and is respected. Shards of one batch (``--shard K/N``) lock separately, since a
job array runs them side by side on the same folder.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from labelfree_app.errors import LabelFreeError
from labelfree_app.io.atomic import write_error

LOCK_NAME = ".labelfree-batch.lock"
UNREADABLE_LOCK_GRACE_S = 30.0  # a lock file still empty after this was left by a crash mid-creation


class BatchBusyError(LabelFreeError):
    """Another batch is writing to the same output folder."""


@dataclass(frozen=True)
class LockOwner:
    pid: int | None
    host: str
    started: str | None  # the process's start time (Linux), to tell a reused pid


def lock_name(report_name: str = "batch_report") -> str:
    """``.labelfree-batch.lock``, or ``.labelfree-batch.shard-K-of-N.lock`` for one shard."""
    _, _, shard = report_name.partition(".")
    return f".labelfree-batch.{shard}.lock" if shard else LOCK_NAME


def _process_start(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None where there is no /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _pid_running(pid: int) -> bool:
    if sys.platform == "win32":  # os.kill(pid, 0) would send Ctrl-C there
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return not _is_zombie(pid)


def owner_alive(owner: LockOwner) -> bool:
    """False only when the owner is surely gone: same host, and its pid is not running (or was reused)."""
    if owner.pid is None or owner.host != socket.gethostname():
        return True
    if owner.pid == os.getpid():
        return True
    if not _pid_running(owner.pid):
        return False
    now = _process_start(owner.pid)
    return owner.started is None or now is None or now == owner.started


class BatchLock:
    """The lock on ``folder`` for one batch (or one shard); ``acquire`` then ``release``."""

    def __init__(self, folder: Path, report_name: str = "batch_report") -> None:
        self.folder = Path(folder)
        self.path = self.folder / lock_name(report_name)
        self._token = uuid.uuid4().hex
        self.held = False

    def acquire(self) -> LockOwner | None:
        """Take the lock; returns the dead owner whose stale lock was taken over, if any.

        Raises BatchBusyError when a live batch holds it.
        """
        replaced: LockOwner | None = None
        for _ in range(20):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner, inode = self._read()
                if inode is None:
                    continue  # released meanwhile
                if owner is not None and owner_alive(owner):
                    raise self._busy(owner)
                if owner is None and not self._old(inode):
                    raise self._busy(LockOwner(None, "", None))
                if self._break(inode):
                    replaced = owner or LockOwner(None, "", None)
                continue
            except OSError as exc:
                raise write_error(exc, self.path) from exc
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": _process_start(os.getpid()),
                           "token": self._token, "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, handle)
            self.held = True
            return replaced
        raise self._busy(self._read()[0] or LockOwner(None, "", None))

    def release(self) -> None:
        """Remove the lock if it is still ours (never another batch's)."""
        if not self.held:
            return
        self.held = False
        try:
            if json.loads(self.path.read_text(encoding="utf-8")).get("token") == self._token:
                self.path.unlink()
        except (OSError, ValueError, AttributeError):
            pass

    def __enter__(self) -> BatchLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _read(self) -> tuple[LockOwner | None, int | None]:
        """The owner written in the lock (None if unreadable) and the lock's inode (None if gone)."""
        try:
            inode = self.path.stat().st_ino
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return LockOwner(int(data["pid"]), str(data.get("host", "")), data.get("started")), inode
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError, TypeError, KeyError):
            try:
                return None, self.path.stat().st_ino
            except OSError:
                return None, None

    def _old(self, inode: int) -> bool:
        try:
            stat = self.path.stat()
        except OSError:
            return True
        return stat.st_ino == inode and time.time() - stat.st_mtime > UNREADABLE_LOCK_GRACE_S

    def _break(self, inode: int) -> bool:
        """Remove the stale lock with this inode; False if another batch got there first."""
        aside = self.path.with_name(f"{self.path.name}.{self._token}.stale")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise write_error(exc, self.path) from exc
        if aside.stat().st_ino == inode:
            aside.unlink()
            return True
        try:  # a live batch's fresh lock was moved aside: put it back
            os.link(aside, self.path)
        except OSError:
            pass
        aside.unlink()
        return False

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
