"""Per-plane files opened as one z-stack: naming the stack and spotting a plane series in a drop."""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from labelfree_app.gui.files.file_list import FAILED, IMAGE_FILTER, FileList, OpenFile
from labelfree_app.io.reading import natural_sort_key

ReadPlanes = Callable[[OpenFile, list[Path]], None]

_NUMBER = re.compile(r"(\d+)")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_GREY = (0, 4)  # IHDR colour types: grey, grey + alpha
_TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class PlaneStack:
    """The files of one z-stack in natural order, the list entry's label, and a stand-in path.

    ``path`` names no real file: it keys the stack in the file list and names its exports.
    """

    planes: tuple[Path, ...]
    label: str
    path: Path


def plane_stack(paths: Sequence[Path]) -> PlaneStack:
    """Name the stack after what every file name shares: 'z_depth-*_PHASE_CONTRAST (13 planes)'."""
    planes = tuple(sorted((Path(p) for p in paths), key=natural_sort_key))
    stems = [path.name.split(".")[0] for path in planes]
    folder, count = planes[0].parent, len(planes)
    if count == 1:
        return PlaneStack(planes, f"{stems[0]} (1 plane)", folder / f"{stems[0]}_1plane")
    prefix = os.path.commonprefix(stems).rstrip("0123456789")
    rests = [stem[len(prefix):] for stem in stems]
    suffix = os.path.commonprefix([rest[::-1] for rest in rests])[::-1].lstrip("0123456789")
    if not (prefix or suffix):
        prefix = stems[0] + "_"
    return PlaneStack(planes, f"{prefix}*{suffix} ({count} planes)", folder / f"{prefix}{count}planes{suffix}")


def names_differ_by_one_number(paths: Sequence[Path]) -> bool:
    """Whether the names are equal but for one number, which differs between every two files."""
    if len(paths) < 2:
        return False
    tokens = [_NUMBER.split(Path(p).name.lower()) for p in paths]
    if len({len(t) for t in tokens}) != 1:
        return False
    varying = [i for i in range(len(tokens[0])) if len({t[i] for t in tokens}) > 1]
    if len(varying) != 1 or varying[0] % 2 == 0:  # odd tokens are the digit runs
        return False
    return len({int(t[varying[0]]) for t in tokens}) == len(tokens)


def plane_signature(path: Path) -> tuple[object, ...] | None:
    """(height, width, pixel type) of a file holding one grey plane, read from its header; else None.

    Colour files are left out: reading a series refuses RGB planes.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(26)
        if head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            bit_depth, colour_type = head[24], head[25]
            return (height, width, "png", bit_depth) if colour_type in _PNG_GREY else None
        if path.name.lower().endswith(_TIFF_SUFFIXES):
            import tifffile  # only when a TIFF is dropped

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                sizes = dict(zip(series.axes, series.shape))
                if any(size != 1 for axis, size in sizes.items() if axis not in "YX"):
                    return None
                return (sizes.get("Y"), sizes.get("X"), str(series.dtype))
    except (OSError, ValueError, IndexError, KeyError, struct.error):  # TiffFileError is a ValueError
        return None
    return None


def looks_like_plane_series(paths: Sequence[Path]) -> bool:
    """Several single-plane files of one size and type whose names differ only by a number."""
    if not names_differ_by_one_number(paths):
        return False
    signatures = {plane_signature(Path(p)) for p in paths}
    return len(signatures) == 1 and None not in signatures


def ask_open_as_stack(parent: QWidget, count: int) -> bool:
    """The drop question; Yes opens one z-stack, No the files one by one."""
    answer = QMessageBox.question(
        parent,
        "Open as z-stack?",
        f"Open these {count} files as one z-stack?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.Yes,
    )
    return answer == QMessageBox.StandardButton.Yes


def open_plane_stack(file_list: FileList, paths: Sequence[Path], read: ReadPlanes) -> OpenFile:
    """One list entry for single-plane files; ``read(record, planes)`` reads them as a (1, Z, Y, X) image.

    Opening the same planes again selects the entry without reading them anew.
    """
    stack = plane_stack(paths)
    record = file_list.add(stack.path, stack.label)
    planes = list(stack.planes)
    if record.state == FAILED or record.extra.get("plane_paths") != planes:
        record.image = record.result = record.ground_truth = None
        record.extra["plane_paths"] = planes
        read(record, planes)
    file_list.select(record)
    return record


def choose_planes(parent: QWidget, folder: str | None) -> list[Path]:
    """File ▸ Open planes as z-stack: the files the user picks (none if cancelled)."""
    chosen, _ = QFileDialog.getOpenFileNames(parent, "Open planes as one z-stack", folder, IMAGE_FILTER)
    return [Path(p) for p in chosen]
