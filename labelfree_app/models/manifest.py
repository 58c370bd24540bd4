"""The model manifest (``manifest.json``): frozen dataclasses mirroring the JSON, with validation.

``Manifest.from_dict`` checks every field and raises ``ManifestError`` whose ``field`` is the dotted
name of the bad field and whose message names the field and the file. See docs/model-package.md.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from labelfree_app.errors import ManifestError
from labelfree_app.models.architectures import ARCHITECTURES, network_problem, required_multiple
from labelfree_app.models.diffusion.variance_scale import VARIANCE_SCALE_RANGE, VarianceScale
from labelfree_app.models.manifest_fields import FieldReader

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "weights.safetensors"
MAX_MANIFEST_BYTES = 1024 * 1024  # real manifests are a few KB; refuse bigger ones before reading
MAX_CHANNELS = 256

KINDS = ("unet", "diffusion")
NORMALIZATION_METHODS = ("zscore", "percentile", "minmax")
SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("eps", "v", "x0")
SAMPLERS = ("ddpm", "ddim", "dpmpp2m", "dpmpp3m")
OUTPUT_DTYPES = ("float32", "uint16", "uint8")  # the names models/diffusion/samplers.py implements
AXES_LETTERS = "CZYX"

_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
_SHA256_PATTERN = re.compile(r"[0-9a-f]{64}\Z")


def valid_model_id(text: str) -> bool:
    """Whether ``text`` may be a model id: a-z, 0-9, '.', '_', '-', starting with a-z or 0-9."""
    return bool(_ID_PATTERN.match(text))


@dataclass(frozen=True)
class ArchitectureSpec:
    id: str
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class InputSpec:
    axes: str
    channels: int
    channel_names: tuple[str, ...] = ()
    z_as_channels: bool = False


@dataclass(frozen=True)
class OutputSpec:
    axes: str
    channels: int
    channel_names: tuple[str, ...] = ()
    dtype: str = "float32"  # the training targets' pixel type: what a prediction in stain units is written as


@dataclass(frozen=True)
class NormalizationSpec:
    method: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NormalizationSettings:
    input: NormalizationSpec
    output: NormalizationSpec | None = None


@dataclass(frozen=True)
class TilingSpec:
    tile_shape: tuple[int, ...]
    halo: tuple[int, ...]


@dataclass(frozen=True)
class DiffusionSettings:
    """A diffusion model's settings; these defaults are what a manifest that leaves a key out means,
    and the prediction defaults of ``core.settings.TABLE``."""

    schedule: str = "cosine"
    train_steps: int = 1000
    prediction: str = "v"
    sampler: str = "ddim"
    steps: int = 25
    samples: int = 8
    eta: float = 0.0
    variance_scale: VarianceScale | None = None  # none: the samples' own spread at every step count


@dataclass(frozen=True)
class TrainingInfo:
    data: str = ""
    steps: int = 0
    seconds: float = 0.0
    device: str = ""
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WeightsSpec:
    sha256: str
    file: str = WEIGHTS_FILE


@dataclass(frozen=True)
class Manifest:
    """What a model is, how to feed it, and where it came from (format_version 1)."""

    id: str
    name: str
    version: str
    kind: str
    target: str
    input_modality: str
    architecture: ArchitectureSpec
    dims: int
    input: InputSpec
    output: OutputSpec
    normalization: NormalizationSettings
    tiling: TilingSpec
    weights: WeightsSpec
    description: str = ""
    diffusion: DiffusionSettings | None = None
    training: TrainingInfo | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    trust: dict[str, Any] = field(default_factory=dict)  # input_profile (core.trust), calibration figures
    license: str = ""
    attribution: str = ""
    demo: bool = False
    tta: bool = False
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | Path | None = None) -> Manifest:
        """Validate ``data`` (the parsed JSON) and build the manifest; ``source`` names the file."""
        return _ManifestReader(source).read(data)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (a fresh dict that ``from_dict`` reads back to an equal manifest)."""
        data = _jsonable(asdict(self))
        if data["diffusion"] is not None and data["diffusion"]["variance_scale"] is None:
            del data["diffusion"]["variance_scale"]  # older manifests never had it: they read back the same
        return {key: data[key] for key in _JSON_ORDER}


_JSON_ORDER = (
    "format_version", "id", "name", "version", "description", "kind", "target", "input_modality",
    "architecture", "dims", "input", "output", "normalization", "tiling", "diffusion", "training",
    "metrics", "trust", "license", "attribution", "demo", "tta", "weights",
)


def _jsonable(value: Any) -> Any:
    """Tuples to lists, recursively (``asdict`` already deep-copies)."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


class _ManifestReader(FieldReader):
    """Reads one manifest dict, raising ManifestError that names the dotted field and the file."""

    def axes(self, data: Mapping[str, Any], name: str, spatial: int) -> str:
        value = self.get(data, name, str)
        letters = set(value)
        if (
            len(value) != len(letters)
            or not letters <= set(AXES_LETTERS)
            or "C" not in letters
            or not {"Y", "X"} <= letters
            or len(letters - {"C"}) != spatial
        ):
            expected = "CYX" if spatial == 2 else "CZYX"
            raise self.fail(name, f"is '{value}' but must hold C and {spatial} spatial axes, e.g. '{expected}'")
        return value

    def normalization(self, data: Mapping[str, Any], name: str) -> NormalizationSpec:
        method = self.choice(data, f"{name}.method", NORMALIZATION_METHODS)
        params = self.get(data, f"{name}.params", dict, {})
        return NormalizationSpec(method=method, params=copy.deepcopy(params))

    def read(self, data: Mapping[str, Any]) -> Manifest:
        if not isinstance(data, Mapping):
            raise ManifestError(
                f"{self.where[0].upper()}{self.where[1:]} is not a JSON object; re-export the model.",
                path=self.source,
            )
        version = self.get(data, "format_version", int)
        if version != FORMAT_VERSION:
            if version > FORMAT_VERSION:
                raise self.fail("format_version", f"is {version}, newer than this LabelFree reads", "update LabelFree")
            raise self.fail("format_version", f"is {version}, which is not supported")
        model_id = self.get(data, "id", str)
        if not _ID_PATTERN.match(model_id):
            raise self.fail("id", f"is '{model_id}' but may only hold a-z, 0-9, '.', '_', '-', starting with a-z or 0-9")
        kind = self.choice(data, "kind", KINDS)
        dims = self.get(data, "dims", int)
        if dims not in (2, 3):
            raise self.fail("dims", f"must be 2 or 3, not {dims}")
        architecture = self._architecture(data, dims)
        input_spec, output_spec = self._io(data, dims)
        norm = self.section(data, "normalization")
        normalization = NormalizationSettings(
            input=self.normalization(self.section(norm, "normalization.input"), "normalization.input"),
            output=(
                None
                if norm.get("output") is None
                else self.normalization(self.section(norm, "normalization.output"), "normalization.output")
            ),
        )
        tiling = self._tiling(data, dims, architecture)
        diffusion = self._diffusion(data, kind)
        self._check_architecture_fits(architecture, input_spec, output_spec, kind, diffusion)
        weights = self.section(data, "weights")
        weights_file = self.get(weights, "weights.file", str, WEIGHTS_FILE)
        if not weights_file or Path(weights_file).name != weights_file or weights_file in (".", ".."):
            raise self.fail("weights.file", f"is '{weights_file}' but must be a plain file name inside the package")
        sha256 = self.get(weights, "weights.sha256", str)
        if not _SHA256_PATTERN.match(sha256):
            raise self.fail("weights.sha256", "must be 64 lowercase hexadecimal digits")
        metrics = self.get(data, "metrics", dict, {})
        return Manifest(
            format_version=version,
            id=model_id,
            name=self._text(data, "name", required=True),
            version=self._text(data, "version", required=True),
            description=self._text(data, "description"),
            kind=kind,
            target=self._text(data, "target", required=True),
            input_modality=self._text(data, "input_modality", required=True),
            architecture=architecture,
            dims=dims,
            input=input_spec,
            output=output_spec,
            normalization=normalization,
            tiling=tiling,
            diffusion=diffusion,
            training=self._training(data),
            metrics=copy.deepcopy(metrics),
            trust=copy.deepcopy(self.get(data, "trust", dict, {})),
            license=self._text(data, "license"),
            attribution=self._text(data, "attribution"),
            demo=self.get(data, "demo", bool, False),
            tta=self.get(data, "tta", bool, False),
            weights=WeightsSpec(file=weights_file, sha256=sha256),
        )

    def _text(self, data: Mapping[str, Any], name: str, required: bool = False) -> str:
        value = self.get(data, name, str) if required else self.get(data, name, str, "")
        if required and not value.strip():
            raise self.fail(name, "is empty")
        return value

    def _architecture(self, data: Mapping[str, Any], dims: int) -> ArchitectureSpec:
        section = self.section(data, "architecture")
        arch_id = self.get(section, "architecture.id", str)
        if arch_id not in ARCHITECTURES:
            known = ", ".join(sorted(ARCHITECTURES))
            raise self.fail("architecture.id", f"names the unknown architecture '{arch_id}' (known: {known})")
        kwargs = self.get(section, "architecture.kwargs", dict)
        if kwargs.get("dims", dims) != dims:
            raise self.fail("architecture.kwargs", f"says dims={kwargs.get('dims')!r} but field 'dims' is {dims}")
        problem = network_problem(arch_id, kwargs)
        if problem is not None:
            raise self.fail(*problem)
        return ArchitectureSpec(id=arch_id, kwargs=copy.deepcopy(kwargs))

    def _io(self, data: Mapping[str, Any], dims: int) -> tuple[InputSpec, OutputSpec]:
        section = self.section(data, "input")
        channels = self.int_at_least(section, "input.channels", 1, high=MAX_CHANNELS)
        input_spec = InputSpec(
            axes=self.axes(section, "input.axes", dims),
            channels=channels,
            channel_names=self.names(section, "input.channel_names", channels),
            z_as_channels=self.get(section, "input.z_as_channels", bool, False),
        )
        if input_spec.z_as_channels and dims != 2:
            raise self.fail("input.z_as_channels", "may only be true for a 2D model (dims 2)")
        section = self.section(data, "output")
        channels = self.int_at_least(section, "output.channels", 1, high=MAX_CHANNELS)
        output_spec = OutputSpec(
            axes=self.axes(section, "output.axes", dims),
            channels=channels,
            channel_names=self.names(section, "output.channel_names", channels),
            dtype=self.choice(section, "output.dtype", OUTPUT_DTYPES, "float32"),
        )
        return input_spec, output_spec

    def _check_architecture_fits(self, arch: ArchitectureSpec, inp: InputSpec, out: OutputSpec, kind: str,
                                 diffusion: DiffusionSettings | None) -> None:
        """Settings the network holds itself (channels; a residual denoiser's schedule) must match the manifest's."""
        if arch.id not in ("fnet_unet", "residual_cond_denoiser"):
            return
        expected: list[tuple[str, Any, str]] = [("in_channels", inp.channels, "input.channels"),
                                                ("out_channels", out.channels, "output.channels")]
        if arch.id == "residual_cond_denoiser":
            if kind != "diffusion" or diffusion is None:
                raise self.fail("architecture.id", "is 'residual_cond_denoiser', which needs kind 'diffusion'")
            expected += [(key, getattr(diffusion, key), f"diffusion.{key}") for key in ("schedule", "train_steps",
                                                                                          "prediction")]
        for key, value, other in expected:
            given = arch.kwargs.get(key, 1 if key.endswith("channels") else value)
            if given != value:
                raise self.fail("architecture.kwargs", f"says {key}={given!r} but '{other}' is {value!r}")

    def _tiling(self, data: Mapping[str, Any], dims: int, arch: ArchitectureSpec) -> TilingSpec:
        section = self.section(data, "tiling")
        tile = self.int_list(section, "tiling.tile_shape", dims, 1)
        halo = self.int_list(section, "tiling.halo", dims, 0, [0] * dims)
        if any(2 * h >= t for h, t in zip(halo, tile)):
            raise self.fail("tiling.halo", f"is {list(halo)} but must be less than half the tile {list(tile)}")
        multiple = required_multiple(arch.id, arch.kwargs) if arch.id == "fnet_unet" else None
        if multiple is not None and any(t % multiple for t in tile):
            raise self.fail("tiling.tile_shape", f"is {list(tile)} but each size must be a multiple of {multiple}")
        return TilingSpec(tile_shape=tile, halo=halo)

    def _diffusion(self, data: Mapping[str, Any], kind: str) -> DiffusionSettings | None:
        section = self.section(data, "diffusion", optional=kind != "diffusion")
        if section is None:
            return None
        d = DiffusionSettings()
        settings = DiffusionSettings(
            schedule=self.choice(section, "diffusion.schedule", SCHEDULES, d.schedule),
            train_steps=self.int_at_least(section, "diffusion.train_steps", 1, d.train_steps, high=100_000),
            prediction=self.choice(section, "diffusion.prediction", PREDICTIONS, d.prediction),
            sampler=self.choice(section, "diffusion.sampler", SAMPLERS, d.sampler),
            steps=self.int_at_least(section, "diffusion.steps", 1, d.steps),
            samples=self.int_at_least(section, "diffusion.samples", 1, d.samples),
            eta=float(self.get(section, "diffusion.eta", (int, float), d.eta)),
        )
        settings = replace(settings, variance_scale=self._variance_scale(section, settings.train_steps))
        if settings.steps > settings.train_steps:
            limit = settings.train_steps
            raise self.fail("diffusion.steps", f"is {settings.steps} but may not exceed diffusion.train_steps ({limit})")
        if not 0.0 <= settings.eta <= 1.0:
            raise self.fail("diffusion.eta", f"is {settings.eta} but must be between 0 and 1")
        return settings

    def _variance_scale(self, diffusion: Mapping[str, Any], train_steps: int) -> VarianceScale | None:
        section = self.section(diffusion, "diffusion.variance_scale", optional=True)
        if section is None:
            return None
        name = "diffusion.variance_scale"
        scale = float(self.get(section, f"{name}.scale", (int, float)))
        low, high = VARIANCE_SCALE_RANGE
        if not (math.isfinite(scale) and low <= scale <= high):
            raise self.fail(f"{name}.scale", f"is {scale} but must be a std factor between {low:g} and {high:g}",
                            "refit it with scripts/calibrate_diffusion_steps.py or remove diffusion.variance_scale")
        eta = float(self.get(section, f"{name}.eta", (int, float), 0.0))
        if not 0.0 <= eta <= 1.0:
            raise self.fail(f"{name}.eta", f"is {eta} but must be between 0 and 1")
        return VarianceScale(
            steps=self.int_at_least(section, f"{name}.steps", 1, high=train_steps),
            sampler=self.choice(section, f"{name}.sampler", SAMPLERS),
            scale=scale,
            eta=eta,
            reference_steps=self.int_at_least(section, f"{name}.reference_steps", 1, 25, high=train_steps),
            fitted_on=self.get(section, f"{name}.fitted_on", str, ""),
            figures=copy.deepcopy(self.get(section, f"{name}.figures", dict, {})),
        )

    def _training(self, data: Mapping[str, Any]) -> TrainingInfo | None:
        section = self.section(data, "training", optional=True)
        if section is None:
            return None
        seconds = float(self.get(section, "training.seconds", (int, float), 0.0))
        if not math.isfinite(seconds) or seconds < 0:
            raise self.fail("training.seconds", f"must be a number of seconds >= 0, not {seconds}")
        return TrainingInfo(
            data=self.get(section, "training.data", str, ""),
            steps=self.int_at_least(section, "training.steps", 0, 0),
            seconds=seconds,
            device=self.get(section, "training.device", str, ""),
            settings=copy.deepcopy(self.get(section, "training.settings", dict, {})),
        )
