"""The free-space check: kernel folders are named as such, and the margin fits the job."""

from __future__ import annotations

import sys
from collections import namedtuple
from pathlib import Path

import pytest

from labelfree_app.cli.main import main
from labelfree_app.errors import DiskFullError, OutputNotWritableError
from labelfree_app.io import atomic, ensure_free_space

LINUX_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and /sys are Linux folders")
usage = namedtuple("usage", "total used free")


@LINUX_ONLY
@pytest.mark.parametrize("folder", ["/proc", "/sys/kernel"])
def test_a_kernel_folder_is_refused_for_what_it_is_not_for_free_space(folder):
    with pytest.raises(OutputNotWritableError) as caught:
        ensure_free_space(folder, 1000)
    message = str(caught.value)
    assert "not a folder on a disk" in message and folder in message and "free space" not in message
    assert message.count(". ") == 0 and message.endswith(".")


@LINUX_ONLY
def test_a_batch_into_a_kernel_folder_fails_before_any_job(tmp_path, unet_package, fields_dir, capsys):
    assert main(["batch", str(fields_dir), "-o", "/proc", "--model", str(unet_package.path), "-q"]) == 1
    err = capsys.readouterr().err
    assert "/proc is a kernel system folder" in err and "0 bytes" not in err


def test_a_small_output_fits_on_a_nearly_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 200_000, 200_000))
    ensure_free_space(tmp_path, 64 * 1024)  # 64 KB output, 195 KB free: the old 16 MB margin refused this
    with pytest.raises(DiskFullError, match="not enough free space"):
        ensure_free_space(tmp_path, 190_000)


def test_the_margin_grows_with_the_job(tmp_path, monkeypatch):
    gigabyte = 1024 ** 3
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda path: usage(10**13, 0, gigabyte + gigabyte // 50))
    with pytest.raises(DiskFullError):
        ensure_free_space(tmp_path, gigabyte)  # 2 % spare is less than the 5 % margin
    ensure_free_space(tmp_path, gigabyte - gigabyte // 10)


def test_a_file_system_that_reports_no_size_is_not_called_full(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda path: usage(0, 0, 0))
    ensure_free_space(Path(tmp_path), 10**6)  # some network file systems report 0; writing will tell


@pytest.mark.skipif(not hasattr(atomic.os, "statvfs"), reason="no statvfs on this platform")
def test_a_read_only_disk_is_named_as_such(tmp_path, monkeypatch):
    real = atomic.os.statvfs

    class ReadOnly:
        def __init__(self, result):
            self._result, self.f_flag = result, result.f_flag | atomic.os.ST_RDONLY

        def __getattr__(self, name):
            return getattr(self._result, name)

    monkeypatch.setattr(atomic.os, "statvfs", lambda path: ReadOnly(real(path)))
    with pytest.raises(OutputNotWritableError, match="is on a read-only disk; choose another folder"):
        ensure_free_space(tmp_path, 10)
