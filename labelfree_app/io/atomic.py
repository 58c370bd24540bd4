"""Atomic writes: a temp file in the destination folder, renamed over the target only when complete.

Reused by image writing, batch export and model packages. Failures become ImageWriteError
subclasses (read-only or missing folder, full disk, an input as output) and leave nothing behind.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Union

from labelfree_app.errors import DiskFullError, ImageWriteError, OutputNotWritableError, OverwriteInputError

PathLike = Union[str, "os.PathLike[str]"]

# Room kept free beyond the estimated size, for metadata and the file system's own needs: a share
# of the job, never less than a small floor (a fixed 16 MB refused small outputs on nearly full disks).
FREE_SPACE_MARGIN_MIN_BYTES = 64 * 1024
FREE_SPACE_MARGIN_FRACTION = 0.05
# File systems the kernel makes up (they report 0 bytes): no file can be saved there.
_KERNEL_FILE_SYSTEMS = {"proc", "sysfs", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "pstore",
                        "bpf", "configfs", "fusectl", "mqueue", "binfmt_misc", "efivarfs", "selinuxfs", "nsfs",
                        "rpc_pipefs", "devpts", "autofs"}
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NOT_WRITABLE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}
_MISSING_ERRNOS = {errno.ENOENT, errno.ENOTDIR}


def human_bytes(nbytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} TB"


def write_error(exc: OSError, path: Path) -> ImageWriteError:
    """The ImageWriteError subclass that explains an OSError raised while writing ``path``."""
    if exc.errno in _DISK_FULL_ERRNOS:
        return DiskFullError(
            f"The disk holding {path} is full; free some space or choose another folder.", path=path
        )
    if exc.errno in _NOT_WRITABLE_ERRNOS:
        return OutputNotWritableError(
            f"{path} cannot be written (the folder is read-only or access is denied); choose another folder.",
            path=path,
        )
    if exc.errno in _MISSING_ERRNOS:
        return OutputNotWritableError(
            f"The folder for {path} does not exist; create it or choose another folder.", path=path
        )
    return ImageWriteError(f"{path} could not be written ({exc.strerror or exc}); nothing was saved.", path=path)


def check_not_input(path: PathLike, protected_paths: Iterable[PathLike]) -> None:
    """Raise OverwriteInputError when ``path`` is (or is a hard link to) one of the inputs."""
    target = Path(os.fspath(path)).expanduser()
    resolved = target.resolve()
    for protected in protected_paths:
        candidate = Path(os.fspath(protected)).expanduser()
        same = candidate.resolve() == resolved
        if not same and target.exists() and candidate.exists():
            same = os.path.samefile(target, candidate)
        if same:
            raise OverwriteInputError(
                f"{target} is one of the input files, which LabelFree never overwrites; "
                "choose another output name or folder.",
                path=target,
            )


def check_writable_folder(folder: Path) -> None:
    """Raise OutputNotWritableError when ``folder`` is missing, not a folder, or read-only."""
    if not folder.exists():
        raise OutputNotWritableError(
            f"The output folder {folder} does not exist; create it or choose another folder.", path=folder
        )
    if not folder.is_dir():
        raise OutputNotWritableError(f"{folder} is not a folder; choose an output folder.", path=folder)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputNotWritableError(
            f"The output folder {folder} is read-only; choose another folder.", path=folder
        )


def _file_system_type(folder: Path) -> str | None:
    """The Linux file system type holding ``folder`` (from /proc/self/mountinfo); None elsewhere."""
    try:
        lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    resolved, best, found = folder.resolve(), -1, None
    for line in lines:
        before, _, after = line.partition(" - ")
        parts = before.split()
        if len(parts) < 5 or not after:
            continue
        mount = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4]))  # " " is \040
        if (mount == resolved or mount in resolved.parents) and len(mount.parts) > best:
            best, found = len(mount.parts), after.split()[0]
    return found


def ensure_free_space(folder: PathLike, nbytes: int, *, margin: int | None = None) -> None:
    """Raise DiskFullError unless ``folder``'s disk has ``nbytes`` plus a margin free.

    The margin is 5 % of ``nbytes`` (at least 64 KB) unless given. A kernel folder such as /proc
    or /sys, or a read-only disk, raises OutputNotWritableError saying so; a file system that
    reports no size at all (some network mounts) is not called full: the write itself will tell.
    """
    folder = Path(os.fspath(folder))
    if margin is None:
        margin = max(FREE_SPACE_MARGIN_MIN_BYTES, int(nbytes * FREE_SPACE_MARGIN_FRACTION))
    try:
        usage = shutil.disk_usage(folder)
    except OSError as exc:
        raise write_error(exc, folder) from exc
    kind = _file_system_type(folder) if usage.total == 0 else None
    if kind in _KERNEL_FILE_SYSTEMS:
        raise OutputNotWritableError(
            f"{folder} is a kernel system folder ({kind}), not a folder on a disk; choose another output folder.",
            path=folder,
        )
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (AttributeError, OSError):  # no statvfs (Windows): the write itself will tell
        read_only = False
    if read_only:
        raise OutputNotWritableError(f"{folder} is on a read-only disk; choose another folder.", path=folder)
    if usage.total == 0:
        return
    if usage.free < nbytes + margin:
        raise DiskFullError(
            f"There is not enough free space in {folder} ({human_bytes(usage.free)} free, about "
            f"{human_bytes(nbytes + margin)} needed); free some space or choose another folder.",
            path=folder,
        )


def _create_temp_file(folder: Path, name: str) -> Path:
    # Not tempfile.mkstemp: it creates mode 0600 files, and the output should get the usual
    # permissions (0666 minus the umask) once renamed.
    for _ in range(100):
        temp = folder / f".{name}.{secrets.token_hex(4)}.part"
        try:
            os.close(os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return temp
    raise FileExistsError(errno.EEXIST, "could not find a free temporary file name", str(folder))


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDWR)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextmanager
def atomic_path(
    path: PathLike, *, protected_paths: Iterable[PathLike] = (), expected_bytes: int | None = None
) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it is renamed to ``path``, on failure removed.

    Checks first that ``path`` is not an input, its folder exists and is writable, and (given
    ``expected_bytes``) that the disk has room. OSErrors become ImageWriteError subclasses.
    """
    target = Path(os.fspath(path)).expanduser().absolute()
    check_not_input(target, protected_paths)
    if target.is_dir():
        raise OutputNotWritableError(f"{target} is a folder; choose a file name for the output.", path=target)
    check_writable_folder(target.parent)
    if expected_bytes is not None:
        ensure_free_space(target.parent, expected_bytes)
    try:
        temp = _create_temp_file(target.parent, target.name)
    except OSError as exc:
        raise write_error(exc, target) from exc
    try:
        yield temp
        _fsync(temp)
        os.replace(temp, target)
    except OSError as exc:
        _remove_quietly(temp)
        raise write_error(exc, target) from exc
    except BaseException:
        _remove_quietly(temp)
        raise


def atomic_write_bytes(path: PathLike, data: bytes, *, protected_paths: Iterable[PathLike] = ()) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path written."""
    with atomic_path(path, protected_paths=protected_paths, expected_bytes=len(data)) as temp:
        temp.write_bytes(data)
    return Path(os.fspath(path)).expanduser()
