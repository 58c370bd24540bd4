"""NGFF (OME-Zarr) image metadata read with checks: multiscales, datasets, axes, coordinate transforms and
OMERO labels. Anything not of NGFF's shape (a transform list that is an object, a scale of text, a path that is
a number) is one ``OmeZarrError`` sentence, never an exception from deep inside the reader."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from labelfree_app.errors import ImageReadError

_UNIT_TO_UM = {"angstrom": 1e-4, "nanometer": 1e-3, "micrometer": 1.0, "millimeter": 1e3, "centimeter": 1e4,
               "meter": 1e6, "nm": 1e-3, "um": 1.0, "µm": 1.0, "mm": 1e3}


class OmeZarrError(ImageReadError):
    """A folder is not OME-Zarr, lacks an array, has a damaged chunk, or needs a plate position."""


def malformed(where: Path, what: str, source: Path | None = None) -> OmeZarrError:
    return OmeZarrError(f"{where} has malformed OME-Zarr metadata ({what}); export or convert it again with an "
                        "NGFF writer.", path=source or where)


def dicts(value: Any, where: Path, what: str) -> list[dict[str, Any]]:
    """``value`` as a list of JSON objects, or the malformed-metadata sentence naming ``what``."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise malformed(where, f"{what} is not a list of objects")
    return value


def text(value: Any, where: Path, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise malformed(where, f"{what} is not a path")
    return value


def image_metadata(attrs: Mapping[str, Any], image_path: Path, source: Path) -> tuple[list[str], dict[str, Any]]:
    """(dataset paths, full resolution first; metadata) of an NGFF image group from its attributes: its axes (names, with type and
    unit from NGFF 0.4 on; none before 0.3, meaning t, c, z, y, x), the datasets' coordinate
    transforms and the OMERO channel labels. Not read with ome-zarr: importing it imports dask
    (~70 MB), and its ``Reader`` opens every pyramid level."""
    multiscales = attrs.get("multiscales")
    if not isinstance(multiscales, list) or not multiscales:
        raise OmeZarrError(f"{image_path} is not a complete OME-Zarr image (its multiscales metadata is missing); "
                           "copy or export it again.", path=source)
    first = multiscales[0]
    if not isinstance(first, dict):
        raise malformed(image_path, "its first multiscale is not an object", source)
    datasets = first.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise OmeZarrError(f"{image_path} is not a complete OME-Zarr image (its multiscales metadata is missing "
                           "the datasets); copy or export it again.", path=source)
    datasets = dicts(datasets, image_path, "its datasets")
    paths = [text(d.get("path"), image_path, "a dataset's path") for d in datasets[:2]]
    axes = first.get("axes") or []
    if not isinstance(axes, list):
        raise malformed(image_path, "its axes are not a list", source)
    metadata: dict[str, Any] = {"axes": [a if isinstance(a, dict) else {"name": str(a)} for a in axes]}
    transforms = [d.get("coordinateTransformations") for d in datasets]
    if any(t is not None for t in transforms):
        metadata["coordinateTransformations"] = transforms
    omero = attrs.get("omero")
    channels = omero.get("channels") if isinstance(omero, dict) else None
    if isinstance(channels, list):
        metadata["channel_names"] = [str(ch.get("label")) if isinstance(ch, dict) and ch.get("label") is not None
                                     else f"channel_{i}" for i, ch in enumerate(channels)]
    return paths, metadata


def pixel_sizes(metadata: Mapping[str, Any], axes_meta: Sequence[Any], image_path: Path,
                 source: Path) -> dict[str, float]:
    """Z, Y, X sizes in µm from the first dataset's scale, for the axes whose unit is a length; a transform
    list that is not NGFF's shape (an object, a scale of text) is the malformed-metadata sentence."""
    transforms = (metadata.get("coordinateTransformations") or [[]])[0] or []
    transforms = dicts(transforms, image_path, "the first dataset's coordinateTransformations")
    scale = next((t.get("scale") for t in transforms if t.get("type") == "scale"), None)
    if scale is None:
        return {}
    if not isinstance(scale, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                              and math.isfinite(v) for v in scale):
        raise malformed(image_path, "the first dataset's scale is not a list of numbers", source)
    if len(scale) != len(axes_meta):
        return {}
    sizes: dict[str, float] = {}
    for axis, value in zip(axes_meta, scale):
        name = str(axis.get("name", "")).lower() if isinstance(axis, dict) else ""
        if name not in ("z", "y", "x") or axis.get("type") == "channel":
            continue
        factor = _UNIT_TO_UM.get(str(axis.get("unit", "")).lower())  # no unit: the size is not stated
        if factor is not None and float(value) > 0:
            sizes[name.upper()] = float(value) * factor
    return sizes
