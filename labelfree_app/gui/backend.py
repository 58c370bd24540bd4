"""The one place where the GUI reaches the Qt-free core: reading, models, devices, the engine.

The window talks to a ``Backend``; the real one (``CoreBackend``) imports the core lazily so the
window appears before torch is imported, and tests hand the window a fake with the same methods.
``run`` is a generator function, so building the engine (loading torch and the weights) happens on
the worker thread at the first ``next()``, never on the GUI thread.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import numpy as np

from labelfree_app.gui.streamed_run import too_large_to_run
from labelfree_app.io.overview import LARGE_PLANE_PIXELS, is_large
from labelfree_app.models.fit import InputFacts

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")


class Backend(Protocol):
    """What the window needs from the core."""

    large_plane_pixels: int  # planes above this are read lazily and shown as an overview

    def read_image(self, path: Path, channel: int | str | None = None) -> Any: ...

    def read_plane_series(self, paths: Sequence[Path]) -> Any: ...

    def transmitted_channel(self, image: Any) -> int: ...

    def list_models(self) -> list[Any]: ...

    def model_manifest(self, model_id: str) -> dict[str, Any]: ...

    def install_model(self, path: Path) -> Any: ...

    def install_fnet_model(self, path: Path, *, name: str, target: str) -> Any: ...

    def remove_model(self, model_id: str) -> None: ...

    def set_default_model(self, target: str, model_id: str) -> None: ...

    def devices(self) -> list[Any]: ...

    def run(self, image: Any, model_id: str, settings: dict[str, Any]) -> Iterator[Any]: ...

    def measure_step_seconds(self, model_id: str, device: str) -> float: ...

    def predict_to_file(self, image: Any, model_id: str, settings: dict[str, Any], inputs: Sequence[Path],
                        out_dir: Path | None = None) -> Iterator[Any]: ...

    def run_batch(self, inputs: Sequence[Path], models: Sequence[str], out_dir: Path, settings: dict[str, Any], *,
                  overwrite: bool, target_channel: int | str | None, should_stop: Any,
                  should_cancel: Any) -> Iterator[Any]: ...

    def pearson_r(self, observed: np.ndarray, predicted: np.ndarray) -> float: ...

    def otsu_mask(self, image: np.ndarray) -> np.ndarray: ...

    def difference_maps(self, observed: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]: ...


def channel_count(image: Any) -> int:
    """Channels of an io ``Image`` whose data is (C, Z, Y, X) or (T, C, Z, Y, X) (never reads pixels)."""
    return int(image.data.shape[-4])


def image_facts(image: Any) -> InputFacts:
    """Planes and channels of an image, for choosing a model that fits it (never reads pixels)."""
    shape = image.data.shape
    return InputFacts(planes=int(shape[-3]), channels=int(shape[-4]))


def channel_volume(image: Any, index: int) -> np.ndarray:
    """One channel as (Z, Y, X); for a time series, its first time point (what the engine predicts)."""
    data = image.data
    if data.ndim == 5:
        data = data[0]
    return data[index]


def frame_volume(image: Any, index: int, t: int) -> np.ndarray:
    """Channel ``index`` of time point ``t`` as (Z, Y, X), read now (a lazy series reads that frame only)."""
    data = image.data
    return np.asarray(data[t][index] if data.ndim == 5 else data[index])


def time_point_note(image: Any, name: str, *, slider: bool = False) -> str:
    """'' without time points, else the sentence saying what the window shows and predicts of them
    (``slider``: the T slider shows every time point, as it does for images shown whole)."""
    count = int(getattr(image, "n_timepoints", 1))
    if count < 2:
        return ""
    if slider:
        return (f"{name} has {count} time points: the T slider under the panels shows each; Run predicts the "
                "first, Predict all time points (Run panel) every one.")
    return (f"{name} has {count} time points: the window shows and predicts the first; File ▸ Batch export… "
            "(or `labelfree predict`) predicts every one.")


def is_large_image(image: Any, large_plane_pixels: int) -> bool:
    """Whether a plane of ``image`` has more pixels than ``large_plane_pixels`` (shown as an overview)."""
    return is_large(tuple(image.data.shape), large_plane_pixels)


def is_image_file(path: Path) -> bool:
    """An image file, or an OME-Zarr folder (one image)."""
    from labelfree_app.io.ome_zarr import is_ome_zarr

    if path.is_dir():
        return path.name.lower().endswith(".ome.zarr") and is_ome_zarr(path)
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders replaced by the image files directly inside them (in natural order:
    plane 2 before plane 10)."""
    from labelfree_app.io.reading import natural_sort_key

    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and not is_image_file(path):  # an .ome.zarr folder opens as one image
            found.extend(sorted((p for p in path.iterdir() if is_image_file(p)), key=natural_sort_key))
        else:
            found.append(path)
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def usable_cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def leave_a_core_for_the_window() -> None:
    """Run the networks' CPU work (torch, ONNX Runtime) on all cores but one, so the GUI thread is never starved.

    With every core busy in torch's thread pool the event loop waited over 100 ms at times on a
    2-core machine; with one core left free the longest wait was about 40 ms.
    """
    from labelfree_app.core.threads import set_cpu_threads  # torch's now, or once it is loaded

    set_cpu_threads(max(1, usable_cpu_count() - 1))


class BusyError(RuntimeError):
    """The network is running a prediction: a step timing waits for another time."""


class CoreBackend:
    """The real backend over ``labelfree_app.io``, ``models.registry`` and ``core.engine``."""

    def __init__(self, *, large_plane_pixels: int | None = None) -> None:
        # Planes above this stay lazy (read region by region) and are shown as an overview.
        self.large_plane_pixels = LARGE_PLANE_PIXELS if large_plane_pixels is None else int(large_plane_pixels)
        self._registry: Any = None
        self._engines: dict[tuple[str, str], Any] = {}
        self._engine_lock = threading.Lock()
        self._network_busy = threading.Lock()  # a run and the step timing never share a network
        self._jobs: Any = None  # the batch job's EngineCache for ``predict_to_file``
        self._jobs_key: tuple[str, str] | None = None

    # --- images ---------------------------------------------------------------------------
    def read_image(self, path: Path, channel: int | str | None = None) -> Any:
        """The image; its pixels stay lazy when a plane is larger than ``large_plane_pixels`` (the
        viewers then show an overview and read the visible region) or the image is a time series (the
        T slider reads the frame it shows), else they are read whole."""
        from labelfree_app.io import read_image
        from labelfree_app.io.pixels import check_fits_in_memory

        image = read_image(path, channel=channel, rgb="luminance", lazy=True)  # a colour camera's bright-field
        series = image.data.ndim == 5 and int(image.data.shape[0]) > 1  # frames are read one at a time
        if not isinstance(image.data, np.ndarray) and not is_large(image.data.shape, self.large_plane_pixels) \
                and not series:
            import dataclasses

            check_fits_in_memory(path, tuple(image.data.shape), image.data.dtype)
            image = dataclasses.replace(image, data=np.asarray(image.data))
        return image

    def read_plane_series(self, paths: Sequence[Path]) -> Any:
        """Single-plane files as one (1, Z, Y, X) image, planes in natural order."""
        from labelfree_app.io import read_plane_series

        return read_plane_series(list(paths), rgb="luminance")

    def transmitted_channel(self, image: Any) -> int:
        from labelfree_app.io import find_transmitted_channel

        return int(find_transmitted_channel(image))

    # --- models ---------------------------------------------------------------------------
    @property
    def registry(self) -> Any:
        if self._registry is None:
            from labelfree_app.models.registry import ModelRegistry

            self._registry = ModelRegistry()
        return self._registry

    def list_models(self) -> list[Any]:
        return list(self.registry.list())

    def model_manifest(self, model_id: str) -> dict[str, Any]:
        return dict(self.registry.get(model_id).manifest.to_dict())

    def install_model(self, path: Path) -> Any:
        return self.registry.install(path)

    def install_fnet_model(self, path: Path, *, name: str, target: str) -> Any:
        """Convert a pytorch_fnet ``model.p`` (or its folder) to a package, then install it."""
        import re
        import tempfile

        from labelfree_app.models.fnet_import import import_fnet_model

        model_id = re.sub(r"[^a-z0-9._-]+", "-", f"fnet-{target}".lower()).strip("-._") or "fnet-model"
        with tempfile.TemporaryDirectory(prefix="labelfree-fnet-") as tmp:
            package = import_fnet_model(path, None, Path(tmp) / model_id, model_id=model_id, name=name, target=target)
            return self.registry.install(package)

    def remove_model(self, model_id: str) -> None:
        self.registry.remove(model_id)
        with self._engine_lock:
            for key in [k for k in self._engines if k[0] == model_id]:
                del self._engines[key]

    def set_default_model(self, target: str, model_id: str) -> None:
        self.registry.set_default(target, model_id)

    def devices(self) -> list[Any]:
        from labelfree_app.core.devices import available_devices

        return list(available_devices())

    # --- running --------------------------------------------------------------------------
    def _engine(self, model_id: str, device: str) -> Any:
        from labelfree_app.core.engine import PredictionEngine

        with self._engine_lock:
            engine = self._engines.get((model_id, device))
            if engine is None:
                # Keep one loaded network at a time: models can be large.
                self._engines.clear()
                self._jobs = self._jobs_key = None
                engine = PredictionEngine(self.registry.get(model_id), device=device)
                self._engines[(model_id, device)] = engine
            return engine

    def run(self, image: Any, model_id: str, settings: dict[str, Any]) -> Iterator[Any]:
        from labelfree_app.core.engine import PredictSettings

        from labelfree_app.errors import ImageTooLargeError

        if is_large_image(image, self.large_plane_pixels):  # whole arrays: ``predict_to_file`` streams
            name = Path(image.path).name if image.path else "This image"
            raise ImageTooLargeError(too_large_to_run(name, image.data.shape), path=image.path)
        leave_a_core_for_the_window()
        engine = self._engine(model_id, str(settings.get("device", "auto")))
        known = set(PredictSettings.__dataclass_fields__)
        if image.data.ndim == 5:  # the viewers show one time point: predict that one
            settings = {"time_point": 0, **settings}
        events = engine.run(image, PredictSettings(**{k: v for k, v in settings.items() if k in known}))
        try:
            with self._network_busy:  # waits for a step timing (seconds), never the other way round
                yield from events
        finally:
            events.close()

    def measure_step_seconds(self, model_id: str, device: str) -> float:
        """One diffusion step's seconds per sample per megapixel for ``model_id`` on ``device``
        (core/step_time: measured once, then cached)."""
        from labelfree_app.core import step_time
        from labelfree_app.core.engine import PredictSettings

        manifest = self.model_manifest(model_id)
        key = step_time.cache_key(model_id, str(manifest.get("version", "")), device)
        known = step_time.cached_step_seconds(key)
        if known is not None:
            return known
        if not self._network_busy.acquire(blocking=False):
            raise BusyError("the model is running; the estimate follows after this run")
        try:
            engine = self._engine(model_id, device)
            channels = int((manifest.get("input") or {}).get("channels", 1))
            known = step_time.measure_step_seconds(
                lambda image, steps: engine.predict(image, PredictSettings(samples=1, steps=steps, device=device)),
                channels)
        finally:
            self._network_busy.release()
        step_time.store_step_seconds(key, known)
        return known

    def predict_to_file(self, image: Any, model_id: str, settings: dict[str, Any], inputs: Sequence[Path],
                        out_dir: Path | None = None) -> Iterator[Any]:
        """A huge image's prediction streamed to a file by the batch job (``streamed_run.predict_to_file``)."""
        from labelfree_app.gui.streamed_run import predict_to_file

        package = self.registry.get(model_id)
        leave_a_core_for_the_window()
        yield from predict_to_file(image, package, settings, inputs, self._job_engines(model_id, settings),
                                   out_dir=out_dir)

    def predict_series(self, image: Any, series: Any, inputs: Sequence[Path]) -> Iterator[Any]:
        """The frames ``series`` (a ``predict.series_run.SeriesResult``) lacks, one batch job each."""
        from labelfree_app.gui.predict.series_run import predict_series

        package = self.registry.get(series.model_id)
        leave_a_core_for_the_window()
        yield from predict_series(image, package, series, inputs, self._job_engines(series.model_id, series.settings))

    def _job_engines(self, model_id: str, settings: dict[str, Any]) -> Any:
        """The batch job's engine cache; one loaded network at a time, as ``_engine`` keeps."""
        from labelfree_app.batch.process import EngineCache

        device = str(settings.get("device", "auto"))
        with self._engine_lock:
            if self._jobs_key != (model_id, device):
                self._engines.clear()
                self._jobs_key, self._jobs = (model_id, device), EngineCache()
            return self._jobs

    def run_batch(self, inputs: Sequence[Path], models: Sequence[str], out_dir: Path, settings: dict[str, Any], *,
                  overwrite: bool, target_channel: int | str | None = None, should_stop: Any = lambda: False,
                  should_cancel: Any = lambda: False) -> Iterator[Any]:
        """Batch export (``labelfree_app.batch``) as events; planning happens on the worker thread."""
        from labelfree_app.batch import BatchOptions, plan_batch, run_batch
        from labelfree_app.batch.plan import resolve_models
        from labelfree_app.core.engine import PredictSettings

        leave_a_core_for_the_window()
        plan = plan_batch(list(inputs), resolve_models(list(models), self.registry), Path(out_dir))
        known = set(PredictSettings.__dataclass_fields__) - {"frames", "preview_interval_s"}
        options = BatchOptions(settings=PredictSettings(**{k: v for k, v in settings.items() if k in known}),
                               overwrite=overwrite, target_channel=target_channel, rgb="luminance")
        yield from run_batch(plan, options, should_stop=should_stop, should_cancel=should_cancel)

    def run_watch(self, folder: Path, models: Sequence[str], out_dir: Path, settings: dict[str, Any], *,
                  settle_s: float, overwrite: bool = False, target_channel: int | str | None = None,
                  should_stop: Any = lambda: False, should_cancel: Any = lambda: False) -> Iterator[Any]:
        """Watch a folder (``batch.watch.watch_folder``) as events; models resolve on the worker thread."""
        from labelfree_app.batch.plan import resolve_models
        from labelfree_app.batch.watch import watch_folder
        from labelfree_app.gui.streamed_run import batch_options

        leave_a_core_for_the_window()
        options = batch_options(settings, overwrite=overwrite, target_channel=target_channel)
        yield from watch_folder(Path(folder), resolve_models(list(models), self.registry), Path(out_dir), options,
                                should_stop=should_stop, should_cancel=should_cancel, settle_s=settle_s)

    # --- metrics --------------------------------------------------------------------------
    def pearson_r(self, observed: np.ndarray, predicted: np.ndarray) -> float:
        from labelfree_app.core.metrics import pearson_r

        return float(pearson_r(observed, predicted))

    def otsu_mask(self, image: np.ndarray) -> np.ndarray:
        from labelfree_app.core.metrics import otsu_mask

        return np.asarray(otsu_mask(image))

    def difference_maps(self, observed: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
        from labelfree_app.core.metrics import difference_maps

        return dict(difference_maps(observed, predicted))
