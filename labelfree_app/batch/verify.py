"""Is an existing output complete? A cheap check before a resumed batch skips a job.

Reads only TIFF headers (every page's IFD, not the pixels): a file cut short by a crash, a copy or a
full disk fails because its pages, its OME metadata or its last strip lie beyond the end of the file.
Where the previous report recorded the file (size, plane shape, dtype, pages), it must match (``verify_outputs``
checks all of a job's outputs against it). An OME-Zarr
output must have every chunk of every level stored, and its stored bytes match the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from labelfree_app.io.tiff_reader import captured_tifffile_log
from labelfree_app.io.zarr_chunks import chunk_region, missing_chunks, stored_bytes, stored_keys

OutputFacts = dict[str, Any]  # {"bytes": int, "shape": [Y, X], "dtype": str, "pages": int}


def _planes(series: Any) -> int:
    """How many pages the series' metadata promises (all axes but Y, X and samples)."""
    axes, shape = series.axes, series.shape
    return int(np.prod([n for axis, n in zip(axes, shape) if axis not in "YXS"], dtype=np.int64))


def _read_facts(path: Path, size: int) -> tuple[OutputFacts | None, str]:
    with captured_tifffile_log() as log, tifffile.TiffFile(path) as tif:
        pages = tif.pages
        pages.useframes = False
        count = len(pages)
        if count == 0:
            return None, "it holds no image"
        first, last = pages.first, pages[count - 1]
        for page in {id(first): first, id(last): last}.values():
            ends = [offset + length for offset, length in zip(page.dataoffsets, page.databytecounts)]
            if not ends or max(ends) > size:
                return None, "it ends before its image data"
        if path.name.lower().endswith((".ome.tif", ".ome.tiff")):
            if not tif.is_ome or not tif.ome_metadata:
                return None, "its OME metadata is missing or cut off"
            promised = _planes(tif.series[0])
            if promised != count:
                return None, f"it has {count} of its {promised} planes"
        if log.errors:
            return None, "its TIFF structure is broken"
        return {"bytes": size, "shape": [int(n) for n in first.shape], "dtype": str(first.dtype),
                "pages": count}, ""


def check_output(path: Path, recorded: OutputFacts | None = None, *,
                 decode_unrecorded: bool = False) -> tuple[OutputFacts | None, str]:
    """``(facts, "")`` when ``path`` is a complete TIFF or OME-Zarr (and matches ``recorded``), else ``(None, why)``.

    ``why`` is "" for a missing file and a short clause ("it is empty", ...) for a broken one.
    ``decode_unrecorded``: an OME-Zarr whose size no report recorded has its chunks decoded (a resume check).
    """
    if Path(path).name.lower().endswith(".ome.zarr"):
        return _check_ome_zarr(Path(path), recorded, decode_unrecorded)
    try:
        size = Path(path).stat().st_size
    except FileNotFoundError:
        return None, ""
    except OSError as exc:
        return None, f"it cannot be read ({exc.strerror or exc})"
    if size == 0:
        return None, "it is empty"
    try:
        facts, problem = _read_facts(Path(path), size)
    except Exception:  # noqa: BLE001 - tifffile raises many types on damaged files; any of them means "redo"
        return None, "it is not a readable TIFF"
    if facts is not None and recorded:
        differs = [key for key in ("bytes", "shape", "dtype", "pages")
                   if key in recorded and recorded[key] != facts[key]]
        if differs:
            return None, f"its {', '.join(differs)} differ from what the report recorded"
    return facts, problem


def _check_ome_zarr(path: Path, recorded: OutputFacts | None, decode_unrecorded: bool) -> tuple[OutputFacts | None, str]:
    """An OME-Zarr output is renamed into place only when complete, with every chunk stored: check its
    metadata, the provenance LabelFree writes last, that no chunk of any level is missing, and that the
    stored bytes match the report. With ``decode_unrecorded`` and no recorded size, every chunk of the full
    resolution is decoded (a cut chunk fails)."""
    if not path.exists():
        return None, ""
    try:
        import zarr

        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
        levels = attrs["ome"]["multiscales"][0]["datasets"]
        arrays = [group[level["path"]] for level in levels]
        if not attrs.get("labelfree", {}).get("provenance"):
            return None, "its provenance is missing"
        size = stored_bytes(path)
    except Exception:  # noqa: BLE001 - any unreadable metadata means "redo"
        return None, "it is not a complete OME-Zarr"
    for level, array in zip(levels, arrays):
        missing = missing_chunks(array, path / str(level["path"]))
        if missing:
            return None, f"its chunk {missing[0]} of {level['path']} is missing"
    first = arrays[0]
    facts = {"bytes": size, "shape": [int(n) for n in first.shape[-2:]], "dtype": str(first.dtype),
             "pages": len(arrays)}
    if recorded:
        differs = [key for key in ("bytes", "shape", "dtype", "pages") if key in recorded and recorded[key] != facts[key]]
        if differs:
            return None, f"its {', '.join(differs)} differ from what the report recorded"
    if decode_unrecorded and "bytes" not in (recorded or {}):
        for coords, _ in stored_keys(first):
            try:
                np.asarray(first[chunk_region(first, coords)])
            except Exception:  # noqa: BLE001 - numcodecs and zarr raise many types on a cut chunk
                return None, f"its chunk {coords} of {levels[0]['path']} is damaged"
    return facts, ""


def relative_name(path: Path, out_dir: Path) -> str:
    """An output's name in the report: its path under ``out_dir`` (whole when outside it)."""
    try:
        return Path(path).relative_to(out_dir).as_posix()
    except ValueError:
        return Path(path).as_posix()


def verify_outputs(wanted: list[Path], out_dir: Path,
                   recorded: dict[str, dict[str, Any]] | None) -> tuple[dict[str, dict[str, Any]] | None, str]:
    """Each output's facts when all are complete; else None and a note naming the broken ones."""
    facts: dict[str, dict[str, Any]] = {}
    problems = []
    for path in wanted:
        name = relative_name(path, out_dir)
        found, problem = check_output(path, (recorded or {}).get(name), decode_unrecorded=True)
        if found is not None:
            facts[name] = found
        elif problem:
            problems.append(f"{path.name} was incomplete ({problem})")
    if len(facts) == len(wanted):
        return facts, ""
    return None, ("redone: " + "; ".join(problems)) if problems else ""
