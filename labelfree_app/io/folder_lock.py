"""A lock file in a folder holding the owner's pid, host and start time, for one writer at a time
(a batch's output folder, the user's model folder).

The lock is created atomically (``O_CREAT | O_EXCL``). A lock whose owner is gone (same host, pid
not running, or running but started at another time: the pid was reused) is stale and is taken
over; the caller is told, so it can clean the dead owner's temp files. A lock from another host
cannot be checked and is respected.
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

UNREADABLE_LOCK_GRACE_S = 30.0  # a lock file still empty after this was left by a crash mid-creation


@dataclass(frozen=True)
class LockOwner:
    pid: int | None
    host: str
    started: str | None  # the process's start time (Linux), to tell a reused pid


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


class FolderLock:
    """A lock file ``name`` in ``folder`` held by one process; ``acquire`` then ``release``. Subclasses say
    in ``_busy`` who holds it."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = Path(folder)
        self.path = self.folder / name
        self._token = uuid.uuid4().hex
        self.held = False

    def acquire(self) -> LockOwner | None:
        """Take the lock; returns the dead owner whose stale lock was taken over, if any.

        Raises ``_busy(owner)`` when a live process holds it.
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
        """Remove the lock if it is still ours (never another process's)."""
        if not self.held:
            return
        self.held = False
        try:
            if json.loads(self.path.read_text(encoding="utf-8")).get("token") == self._token:
                self.path.unlink()
        except (OSError, ValueError, AttributeError):
            pass

    def __enter__(self) -> FolderLock:
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
        """Remove the stale lock with this inode; False if another process got there first."""
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
        try:  # a live owner's fresh lock was moved aside: put it back
            os.link(aside, self.path)
        except OSError:
            pass
        aside.unlink()
        return False

    def _busy(self, owner: LockOwner) -> LabelFreeError:
        return LabelFreeError(f"Another LabelFree process (pid {owner.pid}) holds {self.path}; wait for it to "
                              "finish.", path=self.folder)
