"""Writing prediction results to files with provenance (used by `predict`, `batch` and the GUI)."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from labelfree_app import __version__
from labelfree_app.core.events import PredictionResult
from labelfree_app.core.settings import is_diffusion
from labelfree_app.models.package import sha256_of_file

IMAGE_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png", ".ome.zarr")  # .ome.zarr: a folder
OUTPUT_FORMATS = {"ome-tiff": ".ome.tif", "ome-zarr": ".ome.zarr"}
# The trust map's one channel: per pixel, how familiar the input looks to the model (1: like its
# training inputs, near 0: the model is extrapolating).
TRUST_MAP_CHANNEL = "familiarity"


@dataclass(frozen=True)
class OutputPaths:
    """Where one input × model pair is written."""

    prediction: Path
    variance: Path
    steps: Path
    trust: Path  # the trust map: how familiar each region of the input looks to the model

    def all(self) -> tuple[Path, Path, Path, Path]:
        return (self.prediction, self.variance, self.steps, self.trust)


def image_stem(path: Path) -> str:
    """File name without its image suffix ('a.ome.tif' -> 'a')."""
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def output_paths(input_path: Path, model_id: str, out_dir: Path, stem: str | None = None,
                 fmt: str = "ome-tiff") -> OutputPaths:
    """``<stem>__<model-id>.ome.tif`` (or ``.ome.zarr`` for ``fmt="ome-zarr"``) plus ``__variance``,
    ``__steps`` and ``__trust`` siblings."""
    base = f"{stem or image_stem(input_path)}__{model_id}"
    suffix = OUTPUT_FORMATS[fmt]
    return OutputPaths(
        prediction=out_dir / f"{base}{suffix}",
        variance=out_dir / f"{base}__variance{suffix}",
        steps=out_dir / f"{base}__steps{suffix}",
        trust=out_dir / f"{base}__trust{suffix}",
    )


def provenance(result: PredictionResult, manifest: dict[str, Any], inputs: Iterable[Path], *,
               hash_inputs: bool = True) -> dict[str, Any]:
    """The provenance block stored in every output file. ``trust`` is the reliability estimate
    (``core.trust.TrustEstimate.to_dict()``: expected r, interval, level, method), None when not estimated."""
    paths = [Path(p) for p in inputs]
    trust = getattr(result, "trust", None)  # None: not estimated (a 3D model, or no calibration)
    return {
        "software": "LabelFree",
        "app_version": __version__,
        "python": platform.python_version(),
        "model": {
            "id": manifest.get("id"),
            "name": manifest.get("name"),
            "version": manifest.get("version"),
            "kind": manifest.get("kind"),
            "target": manifest.get("target"),
            "weights_sha256": (manifest.get("weights") or {}).get("sha256"),
            "demo": bool(manifest.get("demo", False)),
        },
        "settings": result.settings,
        "device": result.device,
        "backend": result.backend,
        **({"notes": list(result.notes)} if result.notes else {}),
        "trust": trust.to_dict() if trust is not None else None,
        "seconds": round(result.seconds, 3),
        "inputs": [
            {"path": str(p.resolve()), **({"sha256": sha256_of_file(p)} if hash_inputs and p.is_file() else {})}
            for p in paths
        ],
    }


def as_output_dtype(prediction: np.ndarray, dtype: str) -> tuple[np.ndarray, str]:
    """The prediction as ``dtype`` (stain units, rounded and clipped to the type's range for integers)
    and a note when pixels had to be clipped or were NaN (written as 0)."""
    if dtype == "float32":
        return prediction, ""
    info = np.iinfo(np.dtype(dtype))
    finite = np.isfinite(prediction)
    clipped = int(np.count_nonzero(finite & ((prediction < info.min) | (prediction > info.max))))
    missing = int(prediction.size - np.count_nonzero(finite))
    out = np.clip(np.rint(np.nan_to_num(prediction, nan=0.0, posinf=info.max, neginf=info.min)),
                  info.min, info.max).astype(dtype)
    parts = [f"{clipped} pixel(s) outside the {dtype} range were clipped"] if clipped else []
    parts += [f"{missing} NaN pixel(s) were written as 0"] if missing else []
    return out, (f"Written as {dtype}: " + "; ".join(parts) + ".") if parts else ""


def variance_names(names: list[str] | None) -> list[str] | None:
    """The variance file's channel names: each prediction channel's, said to be its variance, so the
    file cannot be taken for the prediction in another viewer."""
    return [f"{name} (variance)" for name in names] if names else None


def write_result(
    result: PredictionResult,
    manifest: dict[str, Any],
    inputs: list[Path],
    paths: OutputPaths,
    *,
    pixel_size_um: dict[str, float] | None = None,
    save_steps: bool = False,
    trust_map: bool = False,
    hash_inputs: bool = True,
) -> list[Path]:
    """Write prediction (and variance, steps, trust map) atomically; returns the paths written.

    The format follows the paths' suffix: ``.ome.zarr`` paths get OME-Zarr pyramids (``io.ome_zarr``).
    ``trust_map`` writes the result's familiarity map (one channel, 0-1) when the run made one.
    """
    write = _writer(paths)
    meta = provenance(result, manifest, inputs, hash_inputs=hash_inputs)
    names = list(result.channel_names) or None
    written: list[Path] = []
    common = dict(pixel_size_um=pixel_size_um or None, protected_paths=inputs)
    prediction, cast_note = as_output_dtype(result.prediction, str(result.settings.get("dtype", "float32")))
    if cast_note:
        meta["notes"] = [*meta.get("notes", []), cast_note]
    written.append(write(paths.prediction, prediction, result.axes, channel_names=names,
                         provenance={**meta, "content": "prediction" if result.variance is None
                                     or not is_diffusion(manifest) else "mean"},
                         **common))
    if result.variance is not None:
        written.append(write(paths.variance, result.variance, result.axes, channel_names=variance_names(names),
                             provenance={**meta, "content": "variance"}, **common))
    if save_steps and result.frames is not None:
        frames = np.asarray(result.frames, dtype=np.float32)  # (F, C, Z, Y, X): frames as time
        written.append(write(paths.steps, frames, "TCZYX", channel_names=names,
                             provenance={**meta, "content": "denoising steps"}, **common))
    if trust_map and result.trust_map is not None:
        written.append(write_trust_map(result, paths, meta, common))
    return written


def _writer(paths: OutputPaths) -> Any:
    """``write_image`` or, for ``.ome.zarr`` paths, ``write_ome_zarr`` (same keywords, chunk by chunk)."""
    from labelfree_app.io import write_image, write_ome_zarr

    return write_ome_zarr if paths.prediction.name.lower().endswith(".ome.zarr") else write_image


def write_trust_map(result: Any, paths: OutputPaths, meta: dict[str, Any], common: dict[str, Any]) -> Path:
    """The result's familiarity map (one channel, 0-1) as ``paths.trust``, atomically, with the
    provenance ``meta`` and the ``common`` keywords (pixel sizes, protected paths) of its prediction."""
    return _writer(paths)(paths.trust, np.asarray(result.trust_map, dtype=np.float32), result.axes,
                          channel_names=[TRUST_MAP_CHANNEL], provenance={**meta, "content": "trust map"}, **common)


class CastCounts:
    """Clipped and NaN pixel counts of a prediction cast band by band (``as_output_dtype``'s note)."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype
        self.clipped = 0
        self.missing = 0

    def cast(self, prediction: np.ndarray) -> np.ndarray:
        if self.dtype == "float32":
            return prediction
        info = np.iinfo(np.dtype(self.dtype))
        finite = np.isfinite(prediction)
        self.clipped += int(np.count_nonzero(finite & ((prediction < info.min) | (prediction > info.max))))
        self.missing += int(prediction.size - np.count_nonzero(finite))
        return np.clip(np.rint(np.nan_to_num(prediction, nan=0.0, posinf=info.max, neginf=info.min)),
                       info.min, info.max).astype(self.dtype)

    def note(self) -> str:
        parts = [f"{self.clipped} pixel(s) outside the {self.dtype} range were clipped"] if self.clipped else []
        parts += [f"{self.missing} NaN pixel(s) were written as 0"] if self.missing else []
        return (f"Written as {self.dtype}: " + "; ".join(parts) + ".") if parts else ""


class StreamedFiles:
    """The sink of ``PredictionEngine.stream``: prediction (and variance) rows go straight to band
    writers (tiled OME-TIFF or OME-Zarr, by the paths' suffix); ``finish`` adds the provenance and
    renames the temp files. Use as a context manager: leaving early removes the temp files."""

    def __init__(self, paths: OutputPaths, dtype: str, *, pixel_size_um: dict[str, float] | None,
                 protected_paths: list[Path]) -> None:
        from contextlib import ExitStack

        from labelfree_app.io.band_writers import OmeZarrBandWriter, TiledTiffBandWriter

        zarr_out = paths.prediction.name.lower().endswith(".ome.zarr")
        self._writer_type: Any = OmeZarrBandWriter if zarr_out else TiledTiffBandWriter
        self.paths = paths
        self.counts = CastCounts(dtype)
        self._common = dict(pixel_size_um=pixel_size_um or None, protected_paths=protected_paths)
        self._stack = ExitStack()
        self._prediction: Any = None
        self._variance: Any = None

    def __enter__(self) -> StreamedFiles:
        return self

    def begin(self, shape: tuple[int, ...], channel_names: tuple[str, ...], has_variance: bool) -> None:
        names = list(channel_names) or None
        self._prediction = self._stack.enter_context(
            self._writer_type(self.paths.prediction, shape, self.counts.dtype, channel_names=names, **self._common))
        if has_variance:
            self._variance = self._stack.enter_context(
                self._writer_type(self.paths.variance, shape, np.float32, channel_names=variance_names(names),
                                  **self._common))

    def write(self, t: int, z: int, y0: int, prediction: np.ndarray, variance: np.ndarray | None) -> None:
        cast = self.counts.cast(prediction)
        for c in range(cast.shape[0]):
            self._prediction.write_rows(t, c, z, y0, cast[c])
            if variance is not None and self._variance is not None:
                self._variance.write_rows(t, c, z, y0, variance[c])

    def finish(self, result: Any, manifest: dict[str, Any], inputs: list[Path], *,
               hash_inputs: bool = True, trust_map: bool = False) -> list[Path]:
        """Write the provenance of ``result`` (a ``StreamedResult``) and rename; with ``trust_map`` also
        write its trust map when the run drew one (as ``write_result`` does). Returns the paths."""
        meta = provenance(result, manifest, inputs, hash_inputs=hash_inputs)
        note = self.counts.note()
        if note:
            meta["notes"] = [*meta.get("notes", []), note]
        written = [self._prediction.finish({**meta, "content": "prediction"})]
        if self._variance is not None:
            written.append(self._variance.finish({**meta, "content": "variance"}))
        self._stack.close()
        if trust_map and getattr(result, "trust_map", None) is not None:
            written.append(write_trust_map(result, self.paths, meta, self._common))
        return written

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        self._stack.__exit__(kind, exc, tb)


# --- several stains in one file (`predict --merge`, `batch --merge`, the window's Export of a composite) ---
MERGED_SEPARATOR = "+"  # ``<stem>__<idA>+<idB>.ome.tif``


def merged_id(model_ids: Sequence[str]) -> str:
    """The name part of a merged output: the model ids joined by ``+`` in the order given."""
    return MERGED_SEPARATOR.join(model_ids)


def merged_channel_names(manifests: Sequence[dict[str, Any]]) -> list[str]:
    """One channel name per model: its target ('DAPI'), or its id where it names none; a target two
    models share is told apart by the model id ('DAPI (model-b)')."""
    targets = [str(m.get("target") or m.get("id") or f"channel {i}") for i, m in enumerate(manifests)]
    return [f"{name} ({m.get('id')})" if targets.count(name) > 1 else name for name, m in zip(targets, manifests)]


def merged_pixels(results: Sequence[PredictionResult]) -> tuple[np.ndarray, str, list[str]]:
    """The predictions stacked along C, each cast to its own run's dtype (a common type where they
    differ: float32 holds every integer type written here exactly); returns (pixels, axes, notes)."""
    from labelfree_app.errors import LabelFreeError

    if len(results) < 2:
        raise LabelFreeError("A merged output needs two or more models; name each with --model.")
    axes = results[0].axes
    shapes = {tuple(np.shape(r.prediction)[:axes.index("C")] + np.shape(r.prediction)[axes.index("C") + 1:])
              for r in results}
    if len(shapes) != 1 or any(r.axes != axes for r in results):
        raise LabelFreeError("These models predict images of different shapes (a 2D and a 3D model, say), so "
                             "they cannot share one file; merge models of the same kind.")
    cast, notes = [], []
    for result in results:
        pixels, note = as_output_dtype(result.prediction, str(result.settings.get("dtype", "float32")))
        cast.append(pixels)
        if note:
            notes.append(f"{result.model_id}: {note}")
    dtype = np.result_type(*cast)
    dtype = dtype if all(p.dtype == dtype for p in cast) else np.dtype(np.float32)
    return np.concatenate([p.astype(dtype, copy=False) for p in cast], axis=axes.index("C")), axes, notes


def merged_provenance(results: Sequence[PredictionResult], manifests: Sequence[dict[str, Any]],
                      inputs: Iterable[Path], *, hash_inputs: bool = True) -> dict[str, Any]:
    """The provenance of a merged file: software and inputs once, then per channel its name, model,
    settings, device and trust estimate."""
    paths = list(inputs)
    base = provenance(results[0], manifests[0], paths, hash_inputs=hash_inputs)
    names = merged_channel_names(manifests)
    channels = []
    for name, result, manifest in zip(names, results, manifests):
        one = provenance(result, manifest, paths, hash_inputs=False)
        channels.append({"name": name, **{k: one[k] for k in ("model", "settings", "device", "backend", "trust",
                                                              "seconds") if k in one},
                         **({"notes": one["notes"]} if "notes" in one else {}),
                         "content": "mean" if is_diffusion(manifest) else "prediction"})
    ids = [str(m.get("id")) for m in manifests]
    return {
        **{k: base[k] for k in ("software", "app_version", "python")},
        "model": {"id": merged_id(ids), "kind": "merged", "target": MERGED_SEPARATOR.join(names)},
        "content": "merged prediction",
        "channels": channels,
        "seconds": round(sum(r.seconds for r in results), 3),
        "inputs": base["inputs"],
    }


def write_merged(results: Sequence[PredictionResult], manifests: Sequence[dict[str, Any]], inputs: list[Path],
                 path: Path, *, pixel_size_um: dict[str, float] | None = None, hash_inputs: bool = True) -> Path:
    """Write several models' predictions of one input as ONE multi-channel file (channel names = the
    targets), atomically, with each channel's model and trust estimate in the provenance. The one
    merged writer behind `predict --merge`, `batch --merge` and the window's Export."""
    pixels, axes, notes = merged_pixels(results)
    meta = merged_provenance(results, manifests, inputs, hash_inputs=hash_inputs)
    if notes:
        meta["notes"] = notes
    write = _writer(OutputPaths(path, path, path, path))
    return write(path, pixels, axes, channel_names=merged_channel_names(manifests), provenance=meta,
                 pixel_size_um=pixel_size_um or None, protected_paths=inputs)
