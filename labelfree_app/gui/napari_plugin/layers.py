"""Between napari layers and LabelFree values: an image layer → ``io.Image``, a result → layer data.

napari layers carry no axis names, so a layer is read as (Y X), (Z Y X) or (T Z Y X): one
channel, named after the layer. Its scale and translate (pixel size and offset) are kept on the
prediction, variance, trust-map and denoising-frame layers, so they overlay the input exactly.
Layer data are npe2 ``LayerData`` tuples: ``(data, kwargs, "image")``. No Qt here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from labelfree_app.errors import InputShapeError
from labelfree_app.io.image import Image

LayerData = tuple[Any, dict[str, Any], str]
LAYOUTS = {2: "YX", 3: "ZYX", 4: "TZYX"}  # layer dims → axes
RGB_WEIGHTS = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)  # luminance, as io's rgb="luminance"
PREDICTION, VARIANCE, FRAMES, TRUST = "prediction", "variance", "denoising frames", "trust"
TRUST_COLORMAP = "viridis"  # dark where the input looks unlike the training images, bright where familiar
METADATA_KEY = "labelfree"


@dataclass(frozen=True)
class Placement:
    """Where the input layer sits in the world: its axes, scale, translate, units and time point."""

    layer_name: str
    axes: str  # "YX", "ZYX" or "TZYX"
    scale: tuple[float, ...]
    translate: tuple[float, ...]
    units: tuple[str, ...] | None = None
    time_point: int | None = None  # the predicted time point of a T Z Y X layer
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_z(self) -> bool:
        return "Z" in self.axes

    def output_geometry(self, frames: bool = False) -> dict[str, Any]:
        """scale / translate / units for an output layer: the input's, with a length-1 T axis placed at
        the predicted time point, and a leading frames axis (step 1) for the denoising frames."""
        scale, translate = list(self.scale), list(self.translate)
        units = list(self.units) if self.units is not None else None
        if "T" in self.axes and self.time_point is not None:
            translate[0] = translate[0] + self.time_point * scale[0]
        if frames:
            scale, translate = [1.0, *scale], [0.0, *translate]
            units = ["pixel", *units] if units is not None else None
        geometry: dict[str, Any] = {"scale": tuple(scale), "translate": tuple(translate)}
        if units is not None:
            geometry["units"] = tuple(units)
        return geometry


def _unit_names(layer: Any) -> tuple[str, ...] | None:
    units = getattr(layer, "units", None)
    return tuple(str(u) for u in units) if units is not None else None


def image_from_layer(layer: Any, world_point: Sequence[float] | None = None) -> tuple[Image, Placement]:
    """The layer's pixels as an ``io.Image`` (one channel) and where the layer sits.

    ``world_point`` is the viewer's current position (``viewer.dims.point``): for a T Z Y X layer
    the time point shown there is the one predicted."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    rgb = bool(getattr(layer, "rgb", False))
    ndim = int(layer.ndim)
    if ndim not in LAYOUTS:
        raise InputShapeError(f"The layer {layer.name!r} has {ndim} dimensions; LabelFree predicts layers of 2 "
                              "(Y X), 3 (Z Y X) or 4 (T Z Y X) dimensions, one channel per layer.")
    pixels = np.asarray(data)
    if rgb:
        pixels = pixels[..., :3].astype(np.float32) @ RGB_WEIGHTS
    axes = LAYOUTS[ndim]
    scale = tuple(float(s) for s in layer.scale)
    translate = tuple(float(t) for t in layer.translate)
    time_point = None
    if "T" in axes:
        time_point = 0
        if world_point is not None and len(world_point) >= ndim:
            world_t = float(world_point[len(world_point) - ndim])
            time_point = int(np.clip(round((world_t - translate[0]) / scale[0]), 0, pixels.shape[0] - 1))
    sizes = {axis: scale[axes.index(axis)] for axis in ("Z", "Y", "X") if axis in axes}
    pixel_size_um = sizes if any(s != 1.0 for s in sizes.values()) else {}
    image = Image.from_array(pixels, axes, channel_names=[str(layer.name) or "image"], pixel_size_um=pixel_size_um)
    placement = Placement(layer_name=str(layer.name), axes=axes, scale=scale, translate=translate,
                          units=_unit_names(layer), time_point=time_point)
    return image, placement


def _spatial(array: np.ndarray, placement: Placement) -> np.ndarray:
    """(Z, Y, X) → the layer's spatial axes, plus a length-1 T axis for a T Z Y X layer."""
    out = array if placement.has_z else array[0]
    return out[np.newaxis] if "T" in placement.axes else out


def _channel_names(result: Any, count: int) -> list[str]:
    names = list(result.channel_names or ())
    return names if len(names) == count else [f"channel {c}" for c in range(count)]


def result_layers(result: Any, placement: Placement) -> list[LayerData]:
    """Prediction, variance (when the run made one), denoising frames (F first) and the trust map
    (hidden, contrast 0-1) as layer data; every layer's metadata holds the trust estimate."""
    prediction = np.asarray(result.prediction)
    if result.axes != "CZYX":  # the widget predicts one time point; keep the first if given more
        prediction = prediction[0]
    count = prediction.shape[0]
    names = _channel_names(result, count)
    settings = dict(result.settings or {})
    info = {"model_id": result.model_id, "settings": settings, "units": settings.get("units"),
            "source_layer": placement.layer_name, "time_point": placement.time_point,
            "notes": list(result.notes), "seconds": result.seconds, "device": result.device,
            "trust": result.trust.to_dict() if result.trust is not None else None}
    layers: list[LayerData] = []

    def add(base: str, array: np.ndarray, channel: int, colormap: str, frames: bool = False) -> None:
        name = base if count == 1 else f"{base} {names[channel]}"
        kwargs = {"name": name, "colormap": colormap, "blending": "additive",
                  "metadata": {METADATA_KEY: {**info, "kind": base, "channel": names[channel]}},
                  **placement.output_geometry(frames=frames)}
        layers.append((array, kwargs, "image"))

    variance = None if result.variance is None else np.asarray(result.variance)
    frames = None if result.frames is None else np.asarray(result.frames)
    if variance is not None and result.axes != "CZYX":
        variance = variance[0]
    for c in range(count):
        add(PREDICTION, _spatial(prediction[c], placement), c, "green")
        if variance is not None:
            add(VARIANCE, _spatial(variance[c], placement), c, "magma")
        if frames is not None:  # (F, C, Z, Y, X): the frames become the leading (time) axis
            stack = np.stack([_spatial(frame[c], placement) for frame in frames])
            add(FRAMES, stack, c, "gray", frames=True)
    if result.trust_map is not None:
        layers.append(_trust_layer(result, placement, info))
    return layers


def _trust_layer(result: Any, placement: Placement, info: dict[str, Any]) -> LayerData:
    """The familiarity map (1: the input looks like the model's training images, near 0: the model is
    extrapolating), hidden until asked for, at the prediction's place."""
    familiar = np.asarray(result.trust_map)
    if result.axes != "CZYX":
        familiar = familiar[0]
    kwargs = {"name": TRUST, "colormap": TRUST_COLORMAP, "contrast_limits": (0.0, 1.0), "visible": False,
              "opacity": 0.6, "blending": "translucent",
              "metadata": {METADATA_KEY: {**info, "kind": TRUST, "channel": "familiarity"}},
              **placement.output_geometry()}
    return _spatial(familiar[0], placement), kwargs, "image"


def image_layers(image: Image, source: str = "") -> list[LayerData]:
    """One layer per channel of an ``io.Image`` (lazy data stays lazy), named after the channel, with
    the pixel sizes (µm) as scale; a single plane drops the Z axis."""
    data = image.data
    has_t = image.has_time
    z_count = image.shape_zyx[0]
    axes = ("T" if has_t else "") + ("Z" if z_count > 1 else "") + "YX"
    scale = tuple(float(image.pixel_size_um.get(axis, 1.0)) for axis in axes)
    units = tuple("micrometer" if axis in image.pixel_size_um else "pixel" for axis in axes)
    layers: list[LayerData] = []
    for c, name in enumerate(image.channel_names):
        channel = data[:, c] if has_t else data[c]
        if z_count == 1:
            channel = channel[:, 0] if has_t else channel[0]
        meta = {METADATA_KEY: {"path": source or str(image.path or ""), "channel": name, "axes": axes,
                               "pixel_size_um": dict(image.pixel_size_um)}}
        layers.append((channel, {"name": name, "scale": scale, "units": units, "metadata": meta,
                                 "blending": "additive"}, "image"))
    return layers
