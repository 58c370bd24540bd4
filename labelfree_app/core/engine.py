"""The prediction engine: one image in, events out, the result last.

``PredictionEngine(package).run(image, settings)`` is a generator of ``Progress`` and ``Preview``
events whose last item is the ``PredictionResult``. The CLI and the GUI worker both consume it;
closing the generator cancels the run and its ``finally`` blocks drop the big buffers.
"""

from __future__ import annotations

import time
from typing import Any, Generator, Iterator

import numpy as np

from labelfree_app.core.allocator import tune_cpu_allocator
from labelfree_app.core.devices import (check_loaded_on, choose_device, free_memory_bytes, is_out_of_memory,
                                        release_cached_memory)
from labelfree_app.core.drive import drive, relay
from labelfree_app.core.events import Event, PredictionResult, Progress
from labelfree_app.core.inputs import (ModelInputSpec, PreparedInput, as_czyx, image_name, input_notes, mark_missing,
                                       missing_mask, naming_frame, prepare_input, stack_planes, time_points)
from labelfree_app.core.normalize import Normalizer
from labelfree_app.core.runners import load_runner
from labelfree_app.core.scale import Rescaler, choose as choose_scale, streamed_scale_note
from labelfree_app.core.settings import CPU_GROUP, MIN_TILE, PredictSettings, is_diffusion
from labelfree_app.core.streaming import StreamedResult, StreamSpec, stream_series
from labelfree_app.core.tiling import fit_tile_shape_to_memory, iter_predict_tiled, shrink_tile_shape
from labelfree_app.core.trust_recorder import TrustRecorder
from labelfree_app.core.tta import tta_transforms
from labelfree_app.core.welford import Welford
from labelfree_app.errors import InputShapeError, SettingsError
from labelfree_app.models.onnx_int8 import choose as choose_precision

EngineRun = Generator[Event, None, PredictionResult]
__all__ = ["MIN_TILE", "EngineRun", "PredictSettings", "PredictionEngine", "tta_transforms"]


class PredictionEngine:
    """Runs one model package on images; the network is loaded once and reused."""

    def __init__(self, package: Any, device: Any = "auto") -> None:  # "auto", "cuda:1", a Device or torch.device
        tune_cpu_allocator()
        self.package = package
        self.manifest: dict[str, Any] = package.manifest.to_dict()
        self.device = choose_device(device)
        self.kind: str = self.manifest["kind"]
        self.dims: int = int(self.manifest["dims"])
        inp = self.manifest["input"]
        self.input_spec = ModelInputSpec(
            dims=self.dims, channels=int(inp["channels"]), z_as_channels=bool(inp.get("z_as_channels", False))
        )
        self._runner: Any = None
        self._precision = self._runner_for = "fp32"  # of the run in progress (resolved), of the loaded runner
        self._resolved: dict[PredictSettings, dict[str, Any]] = {}
        self._tile_used: tuple[int, ...] | None = None
        self._units = "zscore"

    def resolve(self, settings: PredictSettings) -> dict[str, Any]:
        """The effective settings for this model on this engine's device (``PredictSettings.resolve``).

        The network is loaded on the engine's device, so a settings device other than "auto" that
        names another device is refused with a sentence rather than silently ignored."""
        if settings not in self._resolved:
            values = settings.resolve(self.manifest)
            check_loaded_on(settings.device, self.device)
            values["device"] = str(self.device)
            if values.get("precision") is not None:
                where = getattr(self.package, "path", None)
                values["precision"] = choose_precision(values["precision"], self.manifest, where, self.device)
            self._resolved[settings] = values
        return self._resolved[settings]

    # -- public ---------------------------------------------------------------------------
    def run(self, image: Any, settings: PredictSettings | None = None) -> EngineRun:
        """Predict ``image`` (an ``io.Image``); yields events, the last one is the result."""
        settings = settings or PredictSettings()
        self._units = self.resolve(settings)["units"]  # refused with a sentence before the model loads
        self._precision = self.resolve(settings)["precision"]
        start = time.perf_counter()
        yield Progress("loading", 0, 1, f"Loading model {self.manifest['id']}")
        runner = self._load_runner()
        yield Progress("loading", 1, 1, "Model loaded")
        times = time_points(image, settings)
        outputs: list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = []
        non_finite = 0
        self._trust = TrustRecorder(self.manifest)  # this run's features; kept after it for the caller
        scale = Rescaler(self._choose_scale(image, settings, runner, times[0]))
        for t in times:
            pixels = scale.pixels(self._select_pixels(image, settings, t))
            prepared = prepare_input(pixels, self.input_spec, name=image_name(image))
            missing, count = missing_mask(prepared, self.dims)
            non_finite += count
            with naming_frame(image_name(image), t, len(times)):  # an empty frame of a series is named
                if is_diffusion(self.kind):
                    prediction, variance, frames = yield from self._run_diffusion(runner, prepared, settings)
                else:
                    prediction, variance, frames = yield from self._run_unet(runner, prepared, settings)
            prediction, variance, frames = scale.back(prediction), scale.back(variance), scale.back(frames)
            mark_missing(scale.back_mask(missing), prediction, variance)
            outputs.append((prediction, variance, frames))
        notes = input_notes(image, times, non_finite) + ([scale.choice.note] if scale.choice.note else [])
        if len(times) > 1:
            prediction = np.stack([o[0] for o in outputs])
            variance = np.stack([o[1] for o in outputs]) if outputs[0][1] is not None else None
            frames = outputs[0][2]
            if frames is not None:
                notes.append("The denoising frames show the first time point only.")
        else:
            prediction, variance, frames = outputs[0]
        final = PredictionResult(
            prediction=prediction,
            axes="TCZYX" if len(times) > 1 else "CZYX",
            variance=variance,
            frames=frames,
            channel_names=tuple(self.manifest["output"].get("channel_names") or ()),
            model_id=self.manifest["id"],
            settings={**self._effective_settings(settings), "scale": scale.choice.to_dict(settings.scale)},
            seconds=time.perf_counter() - start,
            device=str(self.device),
            backend=str(getattr(runner, "backend", "torch")),
            notes=tuple(notes), trust=self._trust.estimate(), trust_map=self._trust.trust_map(prediction.shape),
        )
        yield final
        return final

    def predict(self, image: Any, settings: PredictSettings | None = None) -> PredictionResult:
        """Run to the end, ignoring progress; returns the result."""
        result: PredictionResult | None = None
        for event in self.run(image, settings):
            if isinstance(event, PredictionResult):
                result = event
        assert result is not None
        return result

    # -- input ----------------------------------------------------------------------------
    def _choose_scale(self, image: Any, settings: PredictSettings, runner: Any, t: int) -> Any:
        """The run's ``core.scale.ScaleChoice``; the search predicts crops of time point ``t``."""
        resolved = self.resolve(settings)

        def predict_z(crop: np.ndarray) -> np.ndarray:
            part = prepare_input(crop[None], self.input_spec, name="the scale search").parts[0]
            tile, halo, batch = self._tile_settings(part.shape[1:], settings)
            return drive(self._tiled_with_retry(runner.predict, self._normalize(part), tile, halo,
                                                runner.required_multiple, batch, stage="scale", label="scale search"))[0]

        return choose_scale(resolved["scale"], image, self.manifest, resolved["pixel_size_um"],
                            lambda: self._select_pixels(image, settings, t), predict_z)

    def _select_pixels(self, image: Any, settings: PredictSettings, t: int = 0) -> np.ndarray:
        """Pick the transmitted-light channel(s) the model takes at time point ``t``, as (Z, Y, X) or
        (C, Z, Y, X)."""
        return np.asarray(self._select_lazy(image, settings, t))

    def _select_lazy(self, image: Any, settings: PredictSettings, t: int = 0) -> Any:
        """``_select_pixels`` without reading: slices of a lazy image stay lazy."""
        from labelfree_app.io import find_transmitted_channel

        data = image.data
        if data.ndim == 5:  # T, C, Z, Y, X
            data = data[t]
        wanted = 1 if self.input_spec.z_as_channels else self.input_spec.channels
        n_channels = data.shape[0]
        if wanted > 1:
            if n_channels != wanted:
                raise InputShapeError(
                    f"{image_name(image)} has {n_channels} channel(s) but the model takes {wanted}."
                )
            return data
        if settings.channel is not None:
            index = image.channel_index(settings.channel)
        elif n_channels == 1:
            index = 0
        else:
            index = find_transmitted_channel(image)
        return data[index]

    def _normalizer(self) -> Normalizer:
        spec = (self.manifest.get("normalization") or {}).get("input") or {"method": "zscore", "params": {}}
        return Normalizer.from_dict(spec)

    def _output_normalizer(self) -> Normalizer | None:
        """What maps the network's z-scores to the stain's units (None when this run stays in z-scores)."""
        spec = (self.manifest.get("normalization") or {}).get("output")
        return Normalizer.from_dict(spec) if spec and self._units == "stain" else None

    def _normalize(self, part: np.ndarray) -> np.ndarray:
        """Normalize on the whole image (per-tile statistics would make seams); non-finite pixels are
        left out of the statistics and set to the mean (0) for the network."""
        x = self._normalizer().fit(part).apply(part)
        np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        return x

    def _to_output_units(self, array: np.ndarray) -> np.ndarray:
        out_norm = self._output_normalizer()
        if out_norm is None or not out_norm.params:
            return array.astype(np.float32, copy=False)
        return out_norm.invert(array)

    # -- runners --------------------------------------------------------------------------
    def _load_runner(self) -> Any:
        if self._runner is None or self._runner_for != self._precision:  # an int8 run after fp32 loads anew
            self._runner = load_runner(self.package, self.manifest, self.device, self._precision)
            self._runner_for = self._precision
        return self._runner

    def _tile_settings(self, spatial: tuple[int, ...], settings: PredictSettings) -> tuple[tuple[int, ...], tuple[int, ...], int]:
        """Tile shape, halo (context discarded per side) and tiles per batch for this device.

        Bigger tiles waste less on overlaps, so the manifest's tile is a floor: 2D images are cut
        into tiles up to 1024² (or the whole image) as long as the device's free memory allows.
        """
        resolved = self.resolve(settings)
        halo, batch = tuple(resolved["halo"]), int(resolved["batch_size"])
        if not resolved["tile_auto"]:
            self._tile_used = tuple(resolved["tile"])
            return self._tile_used, halo, batch
        base = tuple(resolved["tile"])
        largest = 512 if is_diffusion(self.kind) else 1024
        # + 2 halos: a 1024² image then fits one tile instead of spilling into four
        if self.dims == 3:  # Z stays at the manifest's depth; Y and X grow as in 2D
            preferred = (base[0] + 2 * halo[0],) + tuple(max(b, 512 + 2 * h) for b, h in zip(base[1:], halo[1:]))
        else:
            preferred = tuple(max(b, largest + 2 * h) for b, h in zip(base, halo))
        kwargs = (self.manifest.get("architecture") or {}).get("kwargs") or {}
        group = min(int(resolved["samples"]), CPU_GROUP) if is_diffusion(self.kind) else 1
        bytes_per_voxel = 4 * 12 * int(kwargs.get("base_channels", 32)) * group
        free = free_memory_bytes(self.device) or 2 * 1024**3
        padded = tuple(n + 2 * h for n, h in zip(spatial, halo))  # the grid reflects a halo at edges
        tile = fit_tile_shape_to_memory(padded, preferred, multiple_of=self._multiple(),
                                        free_bytes=free, bytes_per_voxel=bytes_per_voxel, batch_size=batch)
        self._tile_used = tuple(int(t) for t in tile)
        return self._tile_used, halo, batch

    def _multiple(self) -> int:
        runner = self._runner
        return int(getattr(runner, "required_multiple", 16))

    def _run_unet(self, predictor: Any, prepared: PreparedInput, settings: PredictSettings) -> Iterator[Event]:
        tile, halo, batch = self._tile_settings(prepared.parts[0].shape[1:], settings)
        n_parts = len(prepared.parts)
        outputs: list[np.ndarray] = []
        variances: list[np.ndarray] = []
        tta = bool(self.resolve(settings)["tta"])
        transforms = tta_transforms(self.dims) if tta else [(lambda a: a, lambda a: a)]
        passes = n_parts * len(transforms)
        for k, part in enumerate(prepared.parts):
            x = self._normalize(part)
            stats = Welford()
            for m, (forward, inverse) in enumerate(transforms):
                pass_index = k * len(transforms) + m
                label = f"plane {k + 1}/{n_parts}" if n_parts > 1 else ""
                if len(transforms) > 1:
                    label = (label + " " if label else "") + f"augmentation {m + 1}/{len(transforms)}"
                y = yield from self._tiled_with_retry(
                    predictor.predict, np.ascontiguousarray(forward(x)), tile, halo,
                    predictor.required_multiple, batch, stage="tiles", label=label, passes=(pass_index, passes),
                )
                stats.update(inverse(y))
            outputs.append(self._to_output_units(stats.mean))
            self._trust.add(stats.mean, x, stats.variance if tta else None)
            if tta:
                variances.append(self._scale_variance(stats.variance))
        prediction = stack_planes(outputs, self.dims, prepared)
        variance = stack_planes(variances, self.dims, prepared) if variances else None
        return prediction, variance, None

    def _scale_variance(self, variance: np.ndarray) -> np.ndarray:
        """Variance in output units: output normalizations are affine, so scale by slope²."""
        out_norm = self._output_normalizer()
        if out_norm is None or not out_norm.params:
            return variance.astype(np.float32, copy=False)
        ends = out_norm.invert(np.array([0.0, 1.0], dtype=np.float32))
        slope = float(ends[1] - ends[0])
        return (variance * slope * slope).astype(np.float32)

    def _tiled_with_retry(
        self, predict: Any, x: np.ndarray, tile: tuple[int, ...], halo: tuple[int, ...],
        multiple_of: int, batch: int, *, stage: str, label: str, passes: tuple[int, int] = (0, 1),
    ) -> Generator[Event, None, np.ndarray]:
        """Tiled prediction of one pass; progress counts tiles over all ``passes`` (index, count)."""
        index, count = passes
        while True:
            try:
                steps = iter_predict_tiled(x, predict, tile_shape=tile, overlap=tuple(2 * h for h in halo),
                                           margin=halo, multiple_of=multiple_of, batch_size=batch)
                return (yield from relay(steps, lambda step: Progress(
                    stage, index * step[1] + step[0], count * step[1], label)))
            except Exception as exc:  # noqa: BLE001 - only OOM is retried, the rest re-raised
                if not is_out_of_memory(exc):
                    raise
                smaller = shrink_tile_shape(tile, multiple_of)
                if tuple(smaller) == tuple(tile) and batch == 1:
                    raise
                if batch > 1:
                    batch = max(1, batch // 2)
                else:
                    tile = tuple(smaller)
                release_cached_memory(self.device)
                yield Progress(stage, 0, 1, f"Out of memory: retrying with tiles {tile}, batch {batch}")

    def _run_diffusion(self, runner: Any, prepared: PreparedInput, settings: PredictSettings) -> Iterator[Event]:
        resolved = self.resolve(settings)
        tile, halo, batch = self._tile_settings(prepared.parts[0].shape[1:], settings)
        means: list[np.ndarray] = []
        variances: list[np.ndarray] = []
        frames_all: list[np.ndarray] = []
        for k, part in enumerate(prepared.parts):
            cond = self._normalize(part)
            mean, var, frames = yield from runner.sample_image(
                cond,
                samples=int(resolved["samples"]),
                steps=int(resolved["steps"]),
                sampler=str(resolved["sampler"]),
                eta=float(resolved["eta"]),
                seed=int(resolved["seed"]) + k,
                tile_shape=tile, halo=halo, batch_size=batch,
                n_frames=int(resolved["frames"]),
                preview_interval_s=float(resolved["preview_interval_s"]),
                to_output_units=lambda a: as_czyx(self._to_output_units(a), self.dims),
            )
            self._trust.add(mean, cond, var)
            means.append(self._to_output_units(mean))
            variances.append(self._scale_variance(var))
            if frames is not None:
                frames_all.append(frames)
        prediction = stack_planes(means, self.dims, prepared)
        variance = stack_planes(variances, self.dims, prepared)
        frames_out = None
        if frames_all:
            frames_out = frames_all[0] if len(frames_all) == 1 else np.concatenate(frames_all, axis=2)
        return prediction, variance, frames_out

    # -- streaming ------------------------------------------------------------------------
    def can_stream(self) -> bool:
        """Whether ``stream`` runs this model: 2D U-Nets (3D models and diffusion stay whole-image)."""
        return self.dims == 2 and not is_diffusion(self.kind)

    def stream(self, image: Any, settings: PredictSettings | None, sink: Any) -> Generator[Event, None, StreamedResult]:
        """Predict ``image`` plane by plane and band by band into ``sink`` in flat memory.

        ``sink.begin(shape, channel_names, has_variance)`` is called once with the (T, C, Z, Y, X)
        output shape, then ``sink.write(t, z, y0, prediction, variance)`` with finished (C, h, X)
        float32 rows in output units (NaN where the input was not finite). Yields progress events
        and returns a ``StreamedResult``. The input is read region by region (``core.streaming``)."""
        settings = settings or PredictSettings()
        if not self.can_stream():
            raise SettingsError("Streaming prediction takes 2D U-Net models; run this model with run().")
        resolved = self.resolve(settings)
        self._units, self._precision = resolved["units"], resolved["precision"]
        start = time.perf_counter()
        yield Progress("loading", 0, 1, f"Loading model {self.manifest['id']}")
        predictor = self._load_runner()
        yield Progress("loading", 1, 1, "Model loaded")
        times = time_points(image, settings)
        first = self._select_lazy(image, settings, times[0])
        lead = (1,) + tuple(first.shape) if len(first.shape) == 3 else tuple(first.shape)  # (C, Z, Y, X)
        prepare_input(np.zeros(lead[:2] + (1, 1), np.float32), self.input_spec, name=image_name(image))  # checks only
        tile, halo, batch = self._tile_settings(lead[2:], settings)
        names = tuple(self.manifest["output"].get("channel_names") or ())
        spec = StreamSpec(
            predict=predictor.predict, normalizer=self._normalizer(), tile=(tile[0], tile[1]), halo=(halo[0], halo[1]),
            batch_size=batch, multiple=self._multiple(), out_channels=int(self.manifest["output"]["channels"]),
            channel_names=names, z_as_channels=self.input_spec.z_as_channels,
            transforms=tta_transforms(self.dims) if resolved["tta"] else None, finish_rows=self._finish_rows,
            trust=TrustRecorder(self.manifest))
        outcome = yield from stream_series(lambda t: self._select_lazy(image, settings, t), times, spec, sink,
                                           name=image_name(image))
        self._tile_used, axes = outcome.tile, "TCZYX" if len(times) > 1 else "CZYX"
        return StreamedResult(
            axes=axes, shape=outcome.shape, channel_names=names,
            model_id=self.manifest["id"], settings=self._effective_settings(settings),
            seconds=time.perf_counter() - start, device=str(self.device),
            backend=str(getattr(predictor, "backend", "torch")),
            notes=tuple(input_notes(image, times, outcome.non_finite)
                        + streamed_scale_note(settings, image, self.manifest)),
            has_variance=spec.transforms is not None,
            trust=spec.trust.estimate(), trust_map=spec.trust.trust_map(outcome.shape[-len(axes):]))

    def _finish_rows(self, mean: np.ndarray, var: np.ndarray | None,
                     missing: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Streamed rows in z-scores -> output units, NaN where the input was not finite."""
        prediction = self._to_output_units(mean)
        variance = self._scale_variance(var) if var is not None else None
        mark_missing(missing, prediction, variance)
        return prediction, variance

    def _effective_settings(self, settings: PredictSettings) -> dict[str, Any]:
        """The resolved values of this run (provenance), with the tile actually used."""
        values = {k: v for k, v in self.resolve(settings).items() if v is not None}
        if "precision" in values:  # what ran: an int8 network that cannot be rebuilt here falls back to fp32
            values["precision"] = getattr(self._runner, "precision", "fp32")
        if self._tile_used is not None:
            values["tile"] = self._tile_used
        return values
