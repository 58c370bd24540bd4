"""The log file every door writes warnings, errors and unexpected tracebacks to."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import platformdirs

from labelfree_app import paths

LOG_FILE_NAME = "labelfree.log"


def log_dir() -> Path:
    """The platform log folder (under ``LABELFREE_HOME`` when that is set)."""
    home = os.environ.get("LABELFREE_HOME")
    if home:
        return Path(home) / "logs"
    return Path(platformdirs.user_log_dir(paths.APP_NAME, paths.APP_AUTHOR))


def log_file_path() -> Path:
    return log_dir() / LOG_FILE_NAME


def setup_logging() -> Path:
    """Log warnings and errors (with tracebacks) to the log file; returns its path."""
    log_file = log_file_path()
    root = logging.getLogger("labelfree_app")
    for old in [h for h in root.handlers if isinstance(h, logging.FileHandler) and Path(h.baseFilename) != log_file]:
        root.removeHandler(old)  # one log file per process (the home folder may have moved)
        old.close()
    if not any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == log_file for h in root.handlers):
        handler = _LazyFileHandler(log_file, encoding="utf-8", delay=True)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    return log_file


class _LazyFileHandler(logging.FileHandler):
    """A file handler that makes its folder and file only when there is something to write, so a
    command that logs nothing leaves nothing behind."""

    def _open(self):  # type: ignore[no-untyped-def]
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()
