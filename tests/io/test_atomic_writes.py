"""Writes are atomic, never touch inputs, and fail with a clear error on bad destinations."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import tifffile

from labelfree_app.errors import DiskFullError, ImageWriteError, OutputNotWritableError, OverwriteInputError
from labelfree_app.io import atomic_path, atomic_write_bytes, ensure_free_space, read_image, write_image
from labelfree_app.io import atomic, writing
from tests.io.synthetic import ramp

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def folder_listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def failing_imwrite(exc: BaseException):
    """An imwrite that writes half a file and then fails, like a crash or a full disk mid-write."""

    def imwrite(path: Path, *args: object, **kwargs: object) -> None:
        Path(path).write_bytes(b"II*\x00" + b"\x00" * 4096)
        raise exc

    return imwrite


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), DiskFullError),
        (OSError(errno.EIO, "Input/output error"), ImageWriteError),
        (RuntimeError("encoder crashed"), RuntimeError),
        (KeyboardInterrupt(), KeyboardInterrupt),
    ],
)
def test_failed_write_leaves_no_temp_file_and_keeps_the_old_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException, expected: type[BaseException]
) -> None:
    target = tmp_path / "result.ome.tif"
    write_image(target, ramp((4, 5), "uint16"), "YX")
    before = target.read_bytes()
    monkeypatch.setattr(writing.tifffile, "imwrite", failing_imwrite(exc))
    with pytest.raises(expected) as caught:
        write_image(target, ramp((4, 5), "float32"), "YX")
    assert folder_listing(tmp_path) == ["result.ome.tif"]
    assert target.read_bytes() == before
    if isinstance(caught.value, ImageWriteError):
        assert str(target) in str(caught.value)


def test_failed_first_write_leaves_the_folder_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writing.tifffile, "imwrite", failing_imwrite(OSError(errno.ENOSPC, "full")))
    with pytest.raises(DiskFullError):
        write_image(tmp_path / "new.tif", ramp((4, 5), "uint8"), "YX")
    assert folder_listing(tmp_path) == []


@pytest.mark.skipif(IS_ROOT or os.name == "nt", reason="root ignores folder permissions; see the os.access test")
def test_read_only_folder_is_not_writable(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(OutputNotWritableError) as caught:
            write_image(folder / "out.tif", ramp((4, 5), "uint8"), "YX")
        assert str(folder) in str(caught.value)
    finally:
        folder.chmod(stat.S_IRWXU)
    assert folder_listing(folder) == []


def test_folder_reported_read_only_by_the_os_is_not_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_access = os.access

    def access(path: object, mode: int, *args: object, **kwargs: object) -> bool:
        if Path(os.fspath(path)) == tmp_path and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "access", access)
    with pytest.raises(OutputNotWritableError) as caught:
        write_image(tmp_path / "out.tif", ramp((4, 5), "uint8"), "YX")
    assert str(tmp_path) in str(caught.value)
    assert folder_listing(tmp_path) == []


def test_permission_denied_while_creating_the_temp_file_is_not_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(*args: object, **kwargs: object) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.os, "open", denied)
    with pytest.raises(OutputNotWritableError) as caught:
        write_image(tmp_path / "out.tif", ramp((4, 5), "uint8"), "YX")
    assert str(tmp_path / "out.tif") in str(caught.value)


def test_missing_folder_and_folder_under_a_file_are_not_writable(tmp_path: Path) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for target in (tmp_path / "missing" / "out.tif", a_file / "out.tif"):
        with pytest.raises(OutputNotWritableError) as caught:
            write_image(target, ramp((4, 5), "uint8"), "YX")
        assert str(target.parent) in str(caught.value)
    with pytest.raises(OutputNotWritableError):
        write_image(tmp_path, ramp((4, 5), "uint8"), "YX")


def test_too_little_free_space_is_refused_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DiskFullError) as caught:
        write_image(tmp_path / "big.tif", np.zeros((64, 64), np.float32), "YX")
    assert str(tmp_path) in str(caught.value)
    assert folder_listing(tmp_path) == []
    with pytest.raises(DiskFullError):
        ensure_free_space(tmp_path, 10)


def test_enough_free_space_passes(tmp_path: Path) -> None:
    ensure_free_space(tmp_path, 1024)
    assert shutil.disk_usage(tmp_path).free > 1024


def test_writing_over_an_input_is_refused_in_every_spelling(tmp_path: Path) -> None:
    source = tmp_path / "input.tif"
    tifffile.imwrite(source, ramp((6, 6), "uint16"))
    before = source.read_bytes()
    link = tmp_path / "link.tif"
    link.symlink_to(source)
    hard = tmp_path / "hard.tif"
    os.link(source, hard)
    (tmp_path / "sub").mkdir()
    spellings = [source, link, hard, tmp_path / "sub" / ".." / "input.tif", str(source)]
    for target in spellings:
        with pytest.raises(OverwriteInputError) as caught:
            write_image(target, ramp((6, 6), "uint16"), "YX", protected_paths=[source])
        assert str(Path(target).name) in str(caught.value)
    assert source.read_bytes() == before
    assert folder_listing(tmp_path) == ["hard.tif", "input.tif", "link.tif", "sub"]


def test_output_next_to_the_input_is_fine(tmp_path: Path) -> None:
    source = tmp_path / "input.tif"
    tifffile.imwrite(source, ramp((6, 6), "uint16"))
    out = write_image(tmp_path / "input_pred.ome.tif", ramp((6, 6), "float32"), "YX", protected_paths=[source])
    assert read_image(out).dtype == np.float32


def test_atomic_write_bytes_replaces_the_file_with_normal_permissions(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    atomic_write_bytes(target, b"{}")
    atomic_write_bytes(target, b'{"a": 1}')
    assert target.read_bytes() == b'{"a": 1}'
    assert folder_listing(tmp_path) == ["manifest.json"]
    if os.name != "nt":
        umask = os.umask(0)
        os.umask(umask)
        assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_atomic_path_renames_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    with atomic_path(target) as temp:
        assert temp.parent == tmp_path and temp != target
        temp.write_bytes(b"abc")
        assert not target.exists()
    assert target.read_bytes() == b"abc"
    with pytest.raises(ValueError):
        with atomic_path(target) as temp:
            temp.write_bytes(b"partial")
            raise ValueError("stop")
    assert target.read_bytes() == b"abc"
    assert folder_listing(tmp_path) == ["weights.bin"]
