"""OME-Zarr in and out: lazy reading (one image, or one position of a plate) and pyramid writing.

Reading takes the NGFF metadata (0.1 to 0.5, Zarr v2 or v3) from the group attributes and opens the
full-resolution array with ``zarr`` (not ``ome-zarr``, whose import alone costs dask's ~70 MB);
NGFF paths must stay inside the folder, the pixel type is checked as for TIFF, and a missing chunk is refused
unless the store shows it is empty (``io.zarr_chunks``). ``Image.data`` is a ``LazyArray`` whose pixels are read
only when indexed and converted
(``np.asarray``), so picking one channel of one time point reads only that. Writing builds an NGFF
0.5 multiscale image with ``zarr`` chunk row by chunk row (every chunk stored, empty ones too, so a missing one
always means damage) into a temp folder next to the target, renamed when complete;
the provenance goes into the group attributes under ``labelfree``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from labelfree_app.errors import FileAccessError, ForeignOutputError, UnsupportedFormatError
from labelfree_app.io.atomic import check_not_input, check_writable_folder, ensure_free_space, write_error
from labelfree_app.io.channels import default_channel_names
from labelfree_app.io.image import Image, to_canonical
from labelfree_app.io.interrupt_hold import interrupts_held
from labelfree_app.io.lazy import LazyArray
from labelfree_app.io.ngff_metadata import OmeZarrError, dicts, image_metadata, malformed, pixel_sizes, text
from labelfree_app.io.pixels import check_dtype
from labelfree_app.io.zarr_chunks import unexplained_missing

OME_ZARR_SUFFIX = ".ome.zarr"
PROVENANCE_KEY = "labelfree"  # group attribute holding {"provenance": {...}}
CHUNK_YX = 1024  # chunk edge in Y and X (one Z plane, one channel per chunk)
PYRAMID_MIN_EDGE = 256  # levels are added until the longer edge is at most this
PYRAMID_MAX_LEVELS = 8

_log = logging.getLogger(__name__)


def is_ome_zarr(path: Path) -> bool:
    """True for a folder named ``*.ome.zarr`` or one holding Zarr group metadata."""
    path = Path(path)
    if not path.is_dir():
        return False
    if path.name.lower().endswith(OME_ZARR_SUFFIX):
        return True
    return (path / "zarr.json").is_file() or (path / ".zattrs").is_file() or (path / ".zgroup").is_file()


# --- reading ----------------------------------------------------------------------------------
def _ome_attrs(group: Any) -> dict[str, Any]:
    attrs = dict(group.attrs)
    nested = attrs.get("ome", attrs)  # NGFF 0.5 nests under "ome"; 0.4 and older do not
    return dict(nested) if isinstance(nested, dict) else {}


def _open_group(path: Path) -> Any:
    import zarr

    try:
        return zarr.open_group(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 - zarr raises several types for a folder without a group
        raise UnsupportedFormatError(f"{path} is a folder but not an OME-Zarr image (it has no Zarr group "
                                     "metadata); give an .ome.zarr folder or an image file.", path=path) from exc


def inside(store: Path, relative: str, what: str) -> Path:
    """``store / relative`` when it resolves (links followed) to a place inside ``store``; a path in NGFF metadata
    that is absolute or leads out (``../``) is refused, so a store never makes LabelFree read another folder."""
    target = Path(store) / relative
    root = Path(store).resolve()
    resolved = target.resolve()
    if Path(relative).is_absolute() or (resolved != root and root not in resolved.parents):
        raise OmeZarrError(f"{store} names {what} '{relative}' outside its own folder, which LabelFree never "
                           "reads; keep every dataset and well inside the .ome.zarr folder.", path=store)
    return target


def plate_positions(path: Path) -> list[str]:
    """The positions (``row/column/field``, e.g. "A/1/0") of an OME-Zarr plate."""
    root = _open_group(path)
    plate = _ome_attrs(root).get("plate")
    if not isinstance(plate, dict):
        raise malformed(path, "its plate is not an object")
    positions: list[str] = []
    for well in dicts(plate.get("wells", []), path, "the plate's wells"):
        well_path = text(well.get("path"), path, "a well's path").strip("/")
        inside(path, well_path, "a well")
        try:
            well_meta = _ome_attrs(root[well_path]).get("well")
        except Exception:  # noqa: BLE001 - a missing well group lists no positions (a partly acquired plate)
            continue
        images = well_meta.get("images", []) if isinstance(well_meta, dict) else []
        for image in dicts(images, path, f"the images of well {well_path}"):
            image_path = text(image.get("path"), path, f"an image path of well {well_path}").strip("/")
            inside(path, f"{well_path}/{image_path}", "a well image")
            positions.append(f"{well_path}/{image_path}")
    return positions


def read_ome_zarr(path: Path, *, position: str | None = None, channel: int | str | None = None) -> Image:
    """Read an OME-Zarr image (or ``position`` "A/1/0" of a plate) lazily as (C, Z, Y, X) / (T, C, Z, Y, X)."""
    path = Path(path)
    if not path.is_dir():
        raise FileAccessError(f"{path} does not exist; check the path.", path=path)
    attrs = _ome_attrs(_open_group(path))
    image_path = path
    if "plate" in attrs:
        positions = plate_positions(path)
        if not positions:
            raise OmeZarrError(f"{path} is a plate with no images (its wells are missing or list no fields); "
                               "copy or export the plate again.", path=path)
        if position is None:
            shown = ", ".join(positions[:12]) + (", …" if len(positions) > 12 else "")
            raise OmeZarrError(f"{path} is a plate with {len(positions)} positions ({shown}); pick one with "
                               "--position, such as --position " + (positions[0] if positions else "A/1/0") + ".",
                               path=path)
        if position.strip("/") not in positions:
            raise OmeZarrError(f"{path} has no position {position}; it has {', '.join(positions[:12])}.", path=path)
        image_path = inside(path, position.strip("/"), "a position")
        attrs = _ome_attrs(_open_group(image_path))
    elif position is not None:
        raise OmeZarrError(f"{path} is a single image, not a plate, so it has no position {position}; "
                           "leave out --position.", path=path)
    elif "multiscales" not in attrs:
        raise UnsupportedFormatError(f"{path} is a Zarr folder but not an OME-Zarr image (no multiscales or plate "
                                     "metadata); export it as OME-Zarr.", path=path)
    return _read_multiscale(image_path, attrs, channel=channel, source=path)


def _read_multiscale(image_path: Path, attrs: Mapping[str, Any], *, channel: int | str | None,
                     source: Path) -> Image:
    datasets, metadata = image_metadata(attrs, image_path, source)
    array = _full_resolution([inside(image_path, d, "a dataset") for d in datasets], image_path, source)
    axes_meta = metadata.get("axes") or [{"name": n} for n in "tczyx"[-array.ndim:]]
    names = [str(a.get("name", "?")).lower() for a in axes_meta]
    if len(names) != array.ndim or not set(names) <= set("tczyx") or len(set(names)) != len(names):
        raise OmeZarrError(f"{image_path} has axes {names}, which LabelFree cannot map to T, C, Z, Y, X.",
                           path=source)
    empty = [name for name, size in zip(names, array.shape) if int(size) == 0]
    if empty:
        raise OmeZarrError(f"{source} has no pixels: its {empty[0].upper()} axis is 0 long; export it again.",
                           path=source)
    sizes = pixel_sizes(metadata, axes_meta, image_path, source)
    data, axes = to_canonical(array, "".join(names).upper())  # transposes stay lazy
    n_channels = data.shape[axes.index("C")]
    labels = metadata.get("channel_names")
    channel_names = tuple(str(n) for n in labels) if labels and len(labels) == n_channels else \
        default_channel_names(n_channels)
    image = Image(data=data, axes=axes, channel_names=channel_names,  # type: ignore[arg-type]
                  pixel_size_um=sizes, path=source,
                  metadata={"format": "ome-zarr", "source_axes": "".join(names).upper(),
                            "source_shape": tuple(int(n) for n in array.shape),
                            "position": os.path.relpath(image_path, source) if image_path != source else None})
    if channel is None:
        return image
    index = image.channel_index(channel)
    picked = image.data[:, index:index + 1] if image.has_time else image.data[index:index + 1]
    return Image(data=picked, axes=image.axes, channel_names=(channel_names[index],), pixel_size_um=sizes,
                 path=source, metadata=image.metadata)


def _full_resolution(level_paths: list[Path], image_path: Path, source: Path) -> LazyArray:
    """The full-resolution dataset as a lazy array over its zarr chunks (no dask graph), once its pixel type is
    one LabelFree uses and every chunk is stored or stood for by the fill value (``io.zarr_chunks``)."""
    import zarr

    try:
        array = zarr.open_array(str(level_paths[0]), mode="r")
    except Exception as exc:  # noqa: BLE001 - zarr raises several types for a missing array
        raise OmeZarrError(f"{image_path} is not a complete OME-Zarr image (its full-resolution array is missing: "
                           f"{exc}); copy or export it again.", path=source) from exc
    check_dtype(array.dtype, source)
    _check_readable_size(array, image_path, source)
    try:
        lower = zarr.open_array(str(level_paths[1]), mode="r") if len(level_paths) > 1 else None
    except Exception:  # noqa: BLE001 - without a readable lower level no absence is corroborated
        lower = None
    try:
        missing = unexplained_missing(array, level_paths[0], lower)
    except OSError as exc:
        raise OmeZarrError(f"{image_path} cannot be read ({exc.strerror or exc}); check the folder.", path=source) from exc
    except Exception:  # noqa: BLE001 - a damaged lower level corroborates nothing: the chunk reads as missing
        missing = unexplained_missing(array, level_paths[0], None)
    if missing is not None:
        raise OmeZarrError(f"{source} has a missing chunk {missing} in {level_paths[0].name} (inside the image, and "
                           "not an empty region its lower resolutions confirm); copy or export the OME-Zarr again.",
                           path=source)
    return LazyArray(array, source, error=OmeZarrError)


def _check_readable_size(array: Any, image_path: Path, source: Path) -> None:
    """One stored chunk (or shard) must fit in memory, since zarr decodes it whole, and an array must store
    some chunk: a few bytes of metadata can declare terabytes of pixels that are not there."""
    import psutil

    from labelfree_app.errors import ImageTooLargeError
    from labelfree_app.io.atomic import human_bytes

    unit = tuple(int(n) for n in (getattr(array, "shards", None) or array.chunks))
    needed = math.prod(unit) * np.dtype(array.dtype).itemsize
    available = psutil.virtual_memory().available
    if needed > 0.25 * available:
        raise ImageTooLargeError(f"{source} stores its pixels in chunks of {'×'.join(map(str, unit))} "
                                 f"({human_bytes(needed)} each), too large to read in the free memory "
                                 f"({human_bytes(available)}); rechunk it smaller, or if the folder is small, its "
                                 "metadata is damaged.", path=source)
    if array.nchunks and not array.nchunks_initialized:
        shape = "×".join(str(int(n)) for n in array.shape)
        raise OmeZarrError(f"{source} declares {shape} pixels but stores none of them (every chunk of its "
                           "full-resolution array is missing); copy or export it again.", path=source)


# --- writing ----------------------------------------------------------------------------------
def _temp_folder(target: Path) -> Path:
    for _ in range(100):
        temp = target.parent / f".{target.name}.{secrets.token_hex(4)}.part"
        try:
            temp.mkdir()
        except FileExistsError:
            continue
        return temp
    raise FileExistsError(f"no free temporary name next to {target}")


def _row_slabs(height: int, rows: int) -> Iterator[slice]:
    for start in range(0, height, rows):
        yield slice(start, min(height, start + rows))


def build_level(source: Any, dest: Any, chunk: int) -> None:
    """Fill pyramid level ``dest`` from the level above, one chunk-aligned block at a time (the memory
    held is a 2·chunk square of the level above, whatever the image size)."""
    for rows in _row_slabs(dest.shape[-2], chunk):
        for cols in _row_slabs(dest.shape[-1], chunk):
            above = source[..., rows.start * 2: rows.stop * 2, cols.start * 2: cols.stop * 2]
            dest[..., rows, cols] = _downsample(above)


def _downsample(block: np.ndarray) -> np.ndarray:
    """Mean of 2×2 pixel blocks over the last two axes (an odd last row/column is kept as is)."""
    y, x = block.shape[-2:]
    padded = block
    if y % 2 or x % 2:
        padded = np.pad(block, [(0, 0)] * (block.ndim - 2) + [(0, y % 2), (0, x % 2)], mode="edge")
    h, w = padded.shape[-2] // 2, padded.shape[-1] // 2
    shaped = padded.reshape(*padded.shape[:-2], h, 2, w, 2).astype(np.float32, copy=False)
    return shaped.mean(axis=(-3, -1), dtype=np.float32).astype(block.dtype, copy=False)


def pyramid_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Shapes of the levels: Y and X halved (rounded up) until the longer edge ≤ ``PYRAMID_MIN_EDGE``."""
    shapes = [tuple(shape)]
    while max(shapes[-1][-2:]) > PYRAMID_MIN_EDGE and len(shapes) < PYRAMID_MAX_LEVELS:
        last = shapes[-1]
        shapes.append((*last[:-2], -(-last[-2] // 2), -(-last[-1] // 2)))
    return shapes


def write_ome_zarr(
    path: Path,
    data: Any,
    axes: str,
    *,
    channel_names: Sequence[str] | None = None,
    pixel_size_um: Mapping[str, float] | None = None,
    provenance: Mapping[str, Any] | None = None,
    protected_paths: Iterable[Path] = (),
) -> Path:
    """Write ``data`` (axes "CZYX" or "TCZYX") as an NGFF 0.5 multiscale OME-Zarr, atomically.

    Level 0 is copied chunk row by chunk row; each smaller level is built from the one above as
    stored, so no level but the caller's array is ever whole in memory. Returns ``path``.
    """
    target = Path(os.fspath(path)).expanduser().absolute()
    check_not_input(target, protected_paths)
    check_writable_folder(target.parent)
    check_replaceable(target)
    if axes not in ("CZYX", "TCZYX") or getattr(data, "ndim", 0) != len(axes):
        raise ValueError(f"write_ome_zarr takes CZYX or TCZYX data, not {axes!r} with shape {np.shape(data)}")
    ensure_free_space(target.parent, int(np.prod(data.shape, dtype=np.int64)) * np.dtype(data.dtype).itemsize)
    n_channels = data.shape[axes.index("C")]
    names = list(channel_names) if channel_names else list(default_channel_names(n_channels))
    sizes = {k.upper(): float(v) for k, v in (pixel_size_um or {}).items()}
    with interrupts_held():  # zarr writes on a thread of its own: a stop waits for the folder to be whole or gone
        return _write_levels(target, data, axes, names, sizes, provenance)


def _write_levels(target: Path, data: Any, axes: str, names: list[str], sizes: dict[str, float],
                  provenance: Mapping[str, Any] | None) -> Path:
    """Build the pyramid in a temp folder beside ``target`` and rename it into place (``write_ome_zarr``)."""
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    from labelfree_app.io.provenance import provenance_block

    try:
        temp = _temp_folder(target)
    except OSError as exc:
        raise write_error(exc, target) from exc
    try:
        group = zarr.open_group(str(temp), mode="w", zarr_format=3)
        shapes = pyramid_shapes(tuple(int(n) for n in data.shape))
        lead = (1,) * (len(axes) - 2)
        chunks = (*lead, min(CHUNK_YX, shapes[0][-2]), min(CHUNK_YX, shapes[0][-1]))
        levels = []
        for index, shape in enumerate(shapes):
            levels.append(group.create_array(f"s{index}", shape=shape, dtype=np.dtype(data.dtype),
                                             chunks=tuple(min(c, n) for c, n in zip(chunks, shape)),
                                             fill_value=0, config={"write_empty_chunks": True}))
        for rows in _row_slabs(shapes[0][-2], chunks[-2]):
            levels[0][..., rows, :] = np.asarray(data[..., rows, :])
        for index in range(1, len(levels)):
            build_level(levels[index - 1], levels[index], chunks[-2])
        datasets = []
        for index in range(len(levels)):
            factor = 2.0 ** index
            scale = [1.0] * (len(axes) - 3) + [sizes.get("Z", 1.0), sizes.get("Y", 1.0) * factor,
                                               sizes.get("X", 1.0) * factor]
            datasets.append({"path": f"s{index}", "coordinateTransformations": [{"type": "scale", "scale": scale}]})
        axes_meta = [{"name": a.lower(), "type": {"T": "time", "C": "channel"}.get(a, "space"),
                      **({"unit": "micrometer"} if a in "ZYX" and a in sizes else {})} for a in axes]
        write_multiscales_metadata(group, datasets, fmt=FormatV05(), axes=axes_meta, name=target.name,
                                   metadata={"omero": {"channels": [{"label": n, "active": True} for n in names]}})
        group.attrs[PROVENANCE_KEY] = {"provenance": provenance_block(provenance)}
        _replace_folder(temp, target)
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise write_error(exc, target) from exc
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return target


def is_labelfree_output(path: Path) -> bool:
    """True for an OME-Zarr folder whose group metadata holds LabelFree's provenance (one LabelFree wrote)."""
    for name in ("zarr.json", ".zattrs"):
        meta = Path(path) / name
        try:
            if meta.is_file() and meta.stat().st_size < (16 << 20):
                document = json.loads(meta.read_text(encoding="utf-8"))
                attrs = document.get("attributes", {}) if name == "zarr.json" else document
                if isinstance(attrs, dict) and isinstance(attrs.get(PROVENANCE_KEY), dict):
                    return True
        except (OSError, ValueError, AttributeError):
            continue
    return False


def check_replaceable(target: Path) -> None:
    """Refuse to replace something at an output's name that LabelFree did not write (a folder or file of the
    user's): only a missing target or an earlier LabelFree OME-Zarr output may be replaced."""
    if not os.path.lexists(target) or (target.is_dir() and not target.is_symlink() and is_labelfree_output(target)):
        return
    what = "folder" if target.is_dir() else "file"
    raise ForeignOutputError(f"A {what} named {target} is already there and is not a LabelFree output, so "
                                 f"LabelFree will not replace it; move or rename it, or choose another output "
                                 "folder.", path=target)


def _replace_folder(temp: Path, target: Path) -> None:
    """Rename ``temp`` to ``target``; an older ``target`` is moved aside first and removed after. Anything at
    ``target`` that is not a LabelFree output is refused (``check_replaceable``), never deleted."""
    check_replaceable(target)
    if not target.exists():
        os.replace(temp, target)
        return
    old = target.parent / f".{target.name}.{secrets.token_hex(4)}.old.part"
    if target.is_dir():
        os.replace(target, old)
        os.replace(temp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:  # a file of that name: a folder cannot replace it in one step
        target.unlink()
        os.replace(temp, target)


def read_ome_zarr_provenance(path: Path) -> dict[str, Any]:
    """The provenance LabelFree stored in an OME-Zarr it wrote ({} when there is none)."""
    group = _open_group(Path(path))
    block = dict(group.attrs).get(PROVENANCE_KEY) or {}
    return json.loads(json.dumps(block.get("provenance") or {}))
