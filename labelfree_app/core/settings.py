"""Prediction settings: one table of defaults and bounds, and ``resolve`` to the values a run uses.

Every door (CLI, GUI, batch, self-test) builds a :class:`PredictSettings` from what the user set
(``None`` means "the model's default"); :meth:`PredictSettings.resolve` fills the rest from the
model's manifest and this table, checks the bounds, and returns the effective values the engine
runs with and records in the provenance. A default written anywhere else will drift.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np

from labelfree_app.errors import SettingsError
from labelfree_app.io.channels import parse_channel
from labelfree_app.models.diffusion.variance_scale import variance_scale
from labelfree_app.models.manifest import OUTPUT_DTYPES, SAMPLERS
from labelfree_app.models.manifest import DiffusionSettings as ManifestDiffusion

MIN_TILE = 16
CPU_GROUP = 8  # diffusion samples per tile batch on the CPU: with the allocator tuned, 8 cost least per pixel
_MODEL = ManifestDiffusion()  # what a diffusion manifest that leaves a key out means


@dataclass(frozen=True)
class Bound:
    """One setting's default, its allowed range or choices, and its name in error sentences."""

    default: Any
    what: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    asked: Any = None  # the value when the option is switched on without one (``--save-steps``)


UNITS = ("stain", "zscore")  # the stain's own intensity units (where the model knows them), or z-scores

TABLE: dict[str, Bound] = {
    "samples": Bound(_MODEL.samples, "number of diffusion samples", 1, 1024),
    "steps": Bound(_MODEL.steps, "number of sampling steps", 1, _MODEL.train_steps),
    "sampler": Bound(_MODEL.sampler, "sampler", choices=SAMPLERS),
    "eta": Bound(_MODEL.eta, "DDIM eta", 0.0, 1.0),
    "seed": Bound(0, "seed", 0, 2**63 - 1),
    "frames": Bound(0, "number of denoising frames to save", 0, 1000, asked=24),
    "batch_size": Bound(1, "batch size (tiles per network call)", 1, 1024),
    "tile": Bound(256, "tile size", MIN_TILE, 65536),
    "halo": Bound(32, "halo", 0, None),
    "preview_interval_s": Bound(0.1, "preview interval in seconds", 0.0, 3600.0),
    "device": Bound("auto", "device"),
    "channel": Bound(None, "channel"),
    "tta": Bound(False, "test-time augmentation"),
    "units": Bound(None, "output units", choices=UNITS),
    "dtype": Bound("auto", "output pixel type", choices=("auto", *OUTPUT_DTYPES)),
    # U-Nets: int8 only where the model's int8 network was checked against float32 (models/onnx_int8.py)
    "precision": Bound("auto", "network precision", choices=("auto", "fp32", "int8")),
    # core/scale.py: the model's pixel size where both are known; "search" also tries 0.5-2x where not
    "scale": Bound("pixel-size", "scale", choices=("pixel-size", "search", "off")),
    "pixel_size_um": Bound(None, "pixel size in µm", 0.001, 1000.0),
}
DIFFUSION_ONLY = ("samples", "steps", "sampler", "eta")


def is_diffusion(model: Any) -> bool:
    """Whether ``model`` (a manifest, its dict, a registry entry or a kind string) is a diffusion model."""
    if model is None:
        return False
    if isinstance(model, str):
        kind = model
    elif isinstance(model, Mapping):
        kind = model.get("kind")
    else:
        kind = getattr(model, "kind", None)
    return kind == "diffusion"


def check(name: str, value: Any) -> None:
    """Raise a ``SettingsError`` sentence unless ``value`` is allowed for the setting ``name``."""
    bound = TABLE[name]
    if value is None:
        return
    if bound.choices is not None:
        if value not in bound.choices:
            raise SettingsError(f"The {bound.what} must be one of {', '.join(bound.choices)}, not {value!r}.")
        return
    if bound.low is None:
        return
    whole = isinstance(bound.low, int) and isinstance(bound.default, int)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer) if whole else (int, float,
                                                                                                   np.number)):
        kind = "a whole number" if whole else "a number"
        raise SettingsError(f"The {bound.what} must be {kind}, not {value!r}.")
    high = bound.high if bound.high is not None else float("inf")
    if not bound.low <= value <= high:
        upper = f" and at most {_num(bound.high)}" if bound.high is not None else ""
        raise SettingsError(f"The {bound.what} must be at least {_num(bound.low)}{upper}, not {value}.")


def _num(value: float | None) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else str(value)


@dataclass(frozen=True)
class PredictSettings:
    """What the user can set for one prediction; ``None`` means the model's default."""

    channel: int | str | None = None
    samples: int | None = None
    steps: int | None = None
    sampler: str | None = None
    eta: float | None = None
    seed: int = TABLE["seed"].default
    frames: int = TABLE["frames"].default
    tta: bool = TABLE["tta"].default
    device: str = TABLE["device"].default
    tile_shape: tuple[int, ...] | None = None
    batch_size: int | None = None
    preview_interval_s: float = TABLE["preview_interval_s"].default
    time_point: int | None = None  # of a time series: None predicts every time point
    units: str | None = None  # "stain" or "zscore"; None: stain where the model knows them
    dtype: str = TABLE["dtype"].default  # of the written prediction: "auto" = the training targets' type
    precision: str = TABLE["precision"].default  # of the network: "auto" = int8 where it was checked, else fp32
    scale: str = TABLE["scale"].default  # core/scale.py
    pixel_size_um: float | None = None  # the input's, where its file does not say (µm); None: the file's

    def __post_init__(self) -> None:
        """Out-of-range values are refused here, so every door (CLI, GUI, batch) says the same."""
        object.__setattr__(self, "channel", parse_channel(self.channel))
        for name in ("samples", "steps", "sampler", "eta", "seed", "frames", "batch_size", "preview_interval_s",
                     "units", "dtype", "precision", "scale", "pixel_size_um"):
            check(name, getattr(self, name))
        if self.tile_shape is not None:
            tile = tuple(self.tile_shape)
            if len(tile) not in (2, 3) or any(isinstance(t, bool) or not isinstance(t, (int, np.integer))
                                              or t < 1 for t in tile) or min(tile[-2:]) < MIN_TILE:
                raise SettingsError(f"The tile shape must be 2 or 3 sizes (Y X or Z Y X), Y and X of at least "
                                    f"{MIN_TILE} pixels, not {tile}.")
            object.__setattr__(self, "tile_shape", tuple(int(t) for t in tile))
        if self.time_point is not None and self.time_point < 0:
            raise SettingsError(f"The time point must be 0 or more, not {self.time_point}.")
        if not isinstance(self.device, str) or not self.device.strip():
            raise SettingsError(f"The device must be auto, cpu, cuda, cuda:N or mps, not {self.device!r}.")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> PredictSettings:
        """Settings from any mapping (CLI arguments, GUI controls, a batch dialog); unknown keys and
        ``None`` values (= the default) are left out."""
        known = {f.name for f in fields(cls)}
        given = {k: v for k, v in values.items() if k in known and v is not None}
        if "tile_shape" in given:
            given["tile_shape"] = tuple(given["tile_shape"]) or None
        return cls(**given)

    def resolve(self, manifest: Any) -> dict[str, Any]:
        """Every effective value for ``manifest`` (a ``Manifest`` or its dict): the user's, else the
        model's, else the table's. Values a model kind does not use are ``None`` (or off)."""
        data: Mapping[str, Any] = manifest.to_dict() if hasattr(manifest, "to_dict") else manifest
        dims = int(data.get("dims", 2))
        tiling = data.get("tiling") or {}
        diffusion = is_diffusion(data)
        out: dict[str, Any] = {"kind": data.get("kind"), "channel": self.channel, "device": self.device,
                               "seed": self.seed, "preview_interval_s": self.preview_interval_s,
                               "time_point": self.time_point}
        model = (data.get("diffusion") or {}) if diffusion else {}
        for name in DIFFUSION_ONLY:
            value = getattr(self, name)
            out[name] = (value if value is not None else model.get(name, TABLE[name].default)) if diffusion else None
            check(name, out[name])
        train_steps = int(model.get("train_steps", _MODEL.train_steps))
        if diffusion and out["steps"] > train_steps:
            raise SettingsError(f"This model was trained with {train_steps} noise steps, so it can sample with at "
                                f"most {train_steps} steps, not {out['steps']}.")
        # the std factor fitted for sampling this way (models/diffusion/variance_scale.py); None: the samples' own
        out["variance_scale"] = variance_scale(model, steps=out["steps"], sampler=out["sampler"],
                                               eta=out["eta"]) if diffusion else None
        out["frames"] = self.frames if diffusion else 0
        out["tta"] = bool(self.tta) and not diffusion
        out["batch_size"] = self.batch_size or TABLE["batch_size"].default
        out["halo"] = tuple(int(h) for h in (tiling.get("halo") or (TABLE["halo"].default,) * dims))
        if self.tile_shape is not None and len(self.tile_shape) != dims:
            raise SettingsError(f"This model is {dims}D, so the tile shape needs {dims} sizes, not "
                                f"{len(self.tile_shape)} ({self.tile_shape}).")
        out["units"], out["dtype"] = _units_and_dtype(self.units, self.dtype, data)
        out["precision"] = None if diffusion else self.precision  # the engine settles auto (onnx_int8.choose)
        out["scale"], out["pixel_size_um"] = self.scale, self.pixel_size_um
        out["tile_auto"] = self.tile_shape is None  # the engine may grow the model's tile to fit memory
        out["tile"] = self.tile_shape or tuple(int(t) for t in (tiling.get("tile_shape")
                                                                or (TABLE["tile"].default,) * dims))
        return out

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (what the user set; ``None`` = the default)."""
        return asdict(self)


def _units_and_dtype(units: str | None, dtype: str, manifest: Mapping[str, Any]) -> tuple[str, str]:
    """("stain" | "zscore", pixel type): stain units where the model recorded its targets' intensities."""
    known = bool(((manifest.get("normalization") or {}).get("output") or {}).get("params"))
    chosen = units or ("stain" if known else "zscore")
    if chosen == "stain" and not known:
        raise SettingsError("This model does not know its stain's intensity units (it was trained before LabelFree "
                            "recorded them); predict in z-score units (--units zscore) or re-train it.")
    if dtype == "auto":
        dtype = str((manifest.get("output") or {}).get("dtype", "float32")) if chosen == "stain" else "float32"
    if dtype != "float32" and chosen != "stain":
        raise SettingsError(f"A {dtype} prediction needs stain units; z-scores are negative and fractional, so "
                            "they are written as float32.")
    return chosen, dtype
