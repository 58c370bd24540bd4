"""Channel names and pixel sizes from TIFF flavours: OME-XML, ImageJ, MetaMorph, resolution tags."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from typing import Any

import tifffile

PROVENANCE_NAMESPACE = "labelfree.provenance"

# Factor from a length unit to micrometres.
_UNIT_TO_UM = {
    "µm": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "å": 1e-4,
    "pm": 1e-6,
}
_CHANNEL_INFO_KEYS = ("IlluminationType", "ContrastMethod", "AcquisitionMode", "Fluor")


@dataclass(frozen=True)
class FileMetadata:
    """What a TIFF says about itself beyond the pixels."""

    format: str
    channel_names: tuple[str, ...] | None = None
    channel_info: tuple[dict[str, str], ...] | None = None
    pixel_size_um: dict[str, float] = field(default_factory=dict)
    expected_planes: int | None = None


def unit_to_um(unit: str | None) -> float | None:
    """Factor that turns a length in ``unit`` into micrometres; None for unknown units."""
    if unit is None:
        return None
    normalized = unit.strip().replace("\\u00B5", "µ").replace("\\u00b5", "µ").replace("μ", "µ").lower()
    return _UNIT_TO_UM.get(normalized)


def _positive(value: float | None) -> float | None:
    if value is None or not value > 0 or value == float("inf"):
        return None
    return float(value)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _first_image_pixels(root: ElementTree.Element) -> ElementTree.Element | None:
    for image in root:
        if _local(image.tag) == "Image":
            for child in image:
                if _local(child.tag) == "Pixels":
                    return child
            return None
    return None


def ome_metadata(xml: str) -> FileMetadata:
    """Channel names, channel attributes, pixel sizes and plane count of the first OME Image."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return FileMetadata(format="ome")
    pixels = _first_image_pixels(root)
    if pixels is None:
        return FileMetadata(format="ome")
    sizes: dict[str, float] = {}
    for axis in ("X", "Y", "Z"):
        raw = pixels.attrib.get(f"PhysicalSize{axis}")
        factor = unit_to_um(pixels.attrib.get(f"PhysicalSize{axis}Unit", "µm"))
        try:
            value = _positive(float(raw) * factor) if raw is not None and factor is not None else None
        except ValueError:
            value = None
        if value is not None:
            sizes[axis] = value
    channels = [child for child in pixels if _local(child.tag) == "Channel"]
    names = tuple(channel.attrib.get("Name", "") for channel in channels)
    infos = tuple(
        {key: channel.attrib[key] for key in _CHANNEL_INFO_KEYS if key in channel.attrib} for channel in channels
    )
    try:
        planes = int(pixels.attrib["SizeZ"]) * int(pixels.attrib["SizeT"])
        planes *= int(pixels.attrib["SizeC"]) // max(1, _samples_per_channel(channels))
    except (KeyError, ValueError):
        planes = None
    return FileMetadata(
        format="ome",
        channel_names=names or None,
        channel_info=infos or None,
        pixel_size_um=sizes,
        expected_planes=planes,
    )


def _samples_per_channel(channels: list[ElementTree.Element]) -> int:
    try:
        return int(channels[0].attrib.get("SamplesPerPixel", 1)) if channels else 1
    except ValueError:
        return 1


def ome_provenance(xml: str) -> dict[str, Any] | None:
    """The provenance JSON that ``write_image`` stores as an OME CommentAnnotation."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    for element in root.iter():
        if _local(element.tag) == "CommentAnnotation" and element.attrib.get("Namespace") == PROVENANCE_NAMESPACE:
            for value in element:
                if _local(value.tag) == "Value" and value.text:
                    return _json_object(value.text)
    return None


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def imagej_provenance(imagej: dict[str, Any]) -> dict[str, Any] | None:
    """The provenance JSON that ``write_image`` stores in the ImageJ 'Info' property."""
    info = imagej.get("Info")
    if not isinstance(info, str):
        return None
    parsed = _json_object(info)
    if parsed is None:
        return None
    return parsed.get(PROVENANCE_NAMESPACE) if isinstance(parsed.get(PROVENANCE_NAMESPACE), dict) else None


def _resolution_per_unit(page: tifffile.TiffPage, code: int) -> float | None:
    tag = page.tags.get(code)
    if tag is None:
        return None
    value = tag.value
    try:
        numerator, denominator = value if isinstance(value, tuple) else (value, 1)
        return _positive(numerator / denominator) if denominator else None
    except (TypeError, ValueError):
        return None


def imagej_metadata(tif: tifffile.TiffFile, n_channels: int, n_planes_per_channel: int) -> FileMetadata:
    """Pixel sizes ('unit', 'spacing', resolution tags) and channel names from slice labels."""
    info = tif.imagej_metadata or {}
    page = tif.pages.first
    sizes: dict[str, float] = {}
    factor = unit_to_um(info.get("unit"))
    if factor is not None:
        for axis, code in (("X", 282), ("Y", 283)):
            per_unit = _resolution_per_unit(page, code)
            if per_unit is not None and per_unit != 1.0:
                sizes[axis] = factor / per_unit
        spacing = info.get("spacing")
        if isinstance(spacing, (int, float)) and _positive(spacing) is not None:
            sizes["Z"] = float(spacing) * factor
    images = info.get("images")
    return FileMetadata(
        format="imagej",
        channel_names=_imagej_channel_names(info, n_channels, n_planes_per_channel),
        pixel_size_um=sizes,
        expected_planes=int(images) if isinstance(images, int) else None,
    )


def _imagej_channel_names(info: dict[str, Any], n_channels: int, n_planes_per_channel: int) -> tuple[str, ...] | None:
    """Slice labels are per plane; they name channels when every plane of a channel agrees."""
    labels = info.get("Labels")
    if not isinstance(labels, (list, tuple)) or len(labels) != n_channels * n_planes_per_channel:
        return None
    # ImageJ hyperstack plane order is T, Z, C (C fastest).
    names = [str(label) for label in labels[:n_channels]]
    for start in range(0, len(labels), n_channels):
        if [str(label) for label in labels[start : start + n_channels]] != names:
            return None
    if len(set(names)) != len(names):
        return None
    return tuple(names)


def metamorph_metadata(tif: tifffile.TiffFile) -> FileMetadata | None:
    """Pixel size and illumination name from MetaSeries or STK files."""
    if tif.is_metaseries:
        plane = (tif.metaseries_metadata or {}).get("PlaneInfo", {})
        factor = unit_to_um(str(plane.get("spatial-calibration-units", "")))
        sizes: dict[str, float] = {}
        if factor is not None:
            for axis in ("X", "Y"):
                value = plane.get(f"spatial-calibration-{axis.lower()}")
                if isinstance(value, (int, float)) and _positive(value) is not None:
                    sizes[axis] = float(value) * factor
        illumination = str(plane.get("_IllumSetting_", "")).strip()
        return FileMetadata(
            format="metamorph", channel_names=(illumination,) if illumination else None, pixel_size_um=sizes
        )
    if tif.is_stk:
        stk = tif.stk_metadata or {}
        factor = unit_to_um(str(stk.get("CalibrationUnits", "")))
        sizes = {}
        if factor is not None:
            for axis in ("X", "Y"):
                value = stk.get(f"{axis}Calibration")
                if value is not None and _positive(float(value)) is not None:
                    sizes[axis] = float(value) * factor
        return FileMetadata(format="metamorph", pixel_size_um=sizes)
    return None


def resolution_tag_sizes(page: tifffile.TiffPage) -> dict[str, float]:
    """X/Y pixel size from resolution tags, only when the unit is centimetres.

    Inch-based resolution is almost always a print setting (72 dpi), not a pixel size.
    """
    unit = page.tags.get(296)
    if unit is None or int(unit.value) != 3:
        return {}
    sizes = {}
    for axis, code in (("X", 282), ("Y", 283)):
        per_cm = _resolution_per_unit(page, code)
        if per_cm is not None:
            sizes[axis] = 1e4 / per_cm
    return sizes
