"""One batch job, start to finish: skip if verified done, read, predict, write atomically, score.

``process_job`` is the unit both the local runner and Dask workers execute, so the files and the
report row are the same whichever way a batch runs. Models are loaded once per process
(``EngineCache``) and checked against the sha256 the batch was planned with.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Generator, Iterable, Iterator

import numpy as np

from labelfree_app.batch.plan import BatchInput, BatchJob, ModelRef
from labelfree_app.batch.report import BatchRow
from labelfree_app.batch.verify import check_output, relative_name, verify_outputs
from labelfree_app.core import scale, trust_recorder
from labelfree_app.core.drive import drive, relay
from labelfree_app.core.engine import PredictionEngine, PredictSettings
from labelfree_app.core.events import PredictionResult, without_result
from labelfree_app.core.settings import is_diffusion
from labelfree_app.errors import (
    DiskFullError,
    LabelFreeError,
    ModelError,
    OutputNotWritableError,
)
from labelfree_app.export import OutputPaths, write_result
from labelfree_app.io import ensure_free_space, read_image, read_plane_series
from labelfree_app.io.ome_zarr import check_replaceable
from labelfree_app.logfile import log_file_path

_log = logging.getLogger(__name__)

# Errors that will hit every later job too: the batch stops instead of failing file after file.
FATAL_ERRORS = (DiskFullError, OutputNotWritableError)
# Inputs (the pixels of all time points and planes) above this go through the streaming engine
# (``PredictionEngine.stream``): read region by region, written band by band, flat memory. Smaller
# ones keep the whole-image path the GUI uses (same numbers; see tests/core/test_streaming.py).
STREAM_MIN_PIXELS = 1024 * 1024
# A temp file untouched this long belongs to no live writer (tifffile writes a temp without pauses).
STALE_TEMP_AGE_S = 300.0


@dataclass(frozen=True)
class BatchOptions:
    """Settings shared by every job of a batch."""

    settings: PredictSettings = field(default_factory=PredictSettings)
    overwrite: bool = False
    save_steps: bool = False
    target_channel: int | str | None = None
    hash_inputs: bool = True
    rgb: str | int = "error"  # what to do with RGB inputs, as ``io.read_image`` takes it
    format: str = "ome-tiff"  # "ome-tiff" or "ome-zarr" (``export.OUTPUT_FORMATS``)
    position: str | None = None  # the field of an OME-Zarr plate, such as "A/1/0"
    trust_map: bool = False  # also write the trust map (``__trust``) where the model can draw one


class EngineCache:
    """One ``PredictionEngine`` per model and device in this process."""

    def __init__(self) -> None:
        self._engines: dict[tuple[str, str, str], PredictionEngine] = {}

    def get(self, model: ModelRef, device: str) -> PredictionEngine:
        key = (model.path, model.sha256, device)
        if key not in self._engines:
            from labelfree_app.models.package import load_package

            package = load_package(model.path)
            found = (package.manifest.to_dict().get("weights") or {}).get("sha256", "")
            if model.sha256 and found != model.sha256:
                raise ModelError(f"Model {model.id} at {model.path} changed after the batch started; "
                                 "start the batch again.", path=model.path)
            self._engines[key] = PredictionEngine(package, device=device)
        return self._engines[key]


def expected_outputs(job: BatchJob, out_dir: Path, options: BatchOptions, image: Any = None) -> list[Path]:
    """The files a finished job leaves (all must exist for it to count as done). A trust map is
    expected where asked for and the model draws one, unless ``image`` (the input, when read) is so
    large that a U-Net streams it and its map would pass ``trust_recorder.STREAMED_MAP_MAX_PIXELS``."""
    paths = job.outputs(out_dir, options.format)
    wanted = [paths.prediction]
    if job.model.parts:  # a merged job writes one multi-channel file (``batch.merge``)
        return wanted
    if is_diffusion(job.model) or options.settings.tta:
        wanted.append(paths.variance)
    if options.save_steps and is_diffusion(job.model):
        wanted.append(paths.steps)
    pixels = _pixels(image) if image is not None and not is_diffusion(job.model) else 0
    too_large = pixels > STREAM_MIN_PIXELS and pixels > trust_recorder.STREAMED_MAP_MAX_PIXELS
    if options.trust_map and job.model.trust_map and not too_large:
        wanted.append(paths.trust)
    return wanted


def _temp_target(name: str) -> str | None:
    """``a.ome.tif`` for an atomic-write temp name ``.a.ome.tif.<8 hex>.part``, else None."""
    if not (name.startswith(".") and name.endswith(".part")):
        return None
    stem, _, token = name[1:-len(".part")].rpartition(".")
    return stem if stem and len(token) == 8 else None


def remove_stale_temps(paths: Iterable[Path], *, older_than_s: float = STALE_TEMP_AGE_S) -> int:
    """Delete the temp files a killed run left next to these outputs; returns how many.

    Temp names carry no pid, so only temps untouched for ``older_than_s`` count as dead: a temp
    that another process (``labelfree predict``, the GUI) is writing right now is left alone.
    ``older_than_s=0`` removes them all (when the batch that owned the folder is known to be dead).
    """
    wanted: dict[Path, set[str]] = {}
    for path in paths:
        wanted.setdefault(Path(path).parent, set()).add(Path(path).name)
    cutoff = time.time() - older_than_s
    removed = 0
    for folder, names in wanted.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if _temp_target(entry.name) not in names:
                continue
            try:
                if older_than_s <= 0 or entry.stat().st_mtime < cutoff:
                    if entry.is_dir(follow_symlinks=False):  # an OME-Zarr being written is a folder
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                pass
    return removed


def file_identity(path: Path) -> tuple[int, int, int] | None:
    """What tells one version of a file from another (inode, mtime, size); None when it is not there."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def remove_written(before: dict[Path, tuple[int, int, int] | None]) -> None:
    """Remove the outputs this attempt created or replaced: a job is written whole or not at all."""
    for path, identity in before.items():
        if file_identity(path) not in (identity, None):
            if path.is_dir() and not path.is_symlink():  # an OME-Zarr output
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _estimate_bytes(result: PredictionResult, save_steps: bool, trust_map: bool = False) -> int:
    total = result.prediction.nbytes + (result.variance.nbytes if result.variance is not None else 0)
    if save_steps and result.frames is not None:
        total += np.asarray(result.frames).size * 4
    if trust_map and result.trust_map is not None:
        total += result.trust_map.size * 4
    return int(total * 1.05) + 65536


def read_input(entry: BatchInput, rgb: str | int = "error", position: str | None = None) -> Any:
    """The image of one input: one file (or OME-Zarr folder, ``position`` picking a plate's field), or the
    planes of one z-stack read as a (1, Z, Y, X) image."""
    if entry.planes:
        return read_plane_series(list(entry.planes), rgb=rgb)
    return read_image(entry.path, rgb=rgb, position=position, lazy=True)


def streams(engine: PredictionEngine, image: Any, save_steps: bool = False,
            min_pixels: int | None = None, settings: PredictSettings | None = None) -> bool:
    """Whether this job streams: a 2D U-Net and an input above ``STREAM_MIN_PIXELS`` (above
    ``scale.RESAMPLED_STREAM_MIN_PIXELS`` where the input is to be resampled: that needs whole planes)."""
    if min_pixels is None:
        resampled = settings is not None and scale.may_resample(settings, image, engine.manifest)
        min_pixels = scale.RESAMPLED_STREAM_MIN_PIXELS if resampled else STREAM_MIN_PIXELS
    return engine.can_stream() and _pixels(image) > min_pixels


def _pixels(image: Any) -> int:
    """The pixels of one channel of ``image``: all its time points and planes."""
    return int(np.prod(tuple(image.data.shape), dtype=np.int64)) // max(1, image.n_channels)


def _read_for_trust_map(job: BatchJob, options: BatchOptions, image: Any) -> Any:
    """The input, read when a trust map is asked for (``expected_outputs`` needs its size); else
    ``image`` as given. None when it cannot be read: the job reports that."""
    if image is not None or not (options.trust_map and job.model.trust_map):
        return image
    try:
        return read_input(job.input, options.rgb, options.position)
    except LabelFreeError:
        return None


def stream_result(engine: PredictionEngine, image: Any, settings: PredictSettings, inputs: list[Path],
                  paths: OutputPaths, *, trust_map: bool = False,
                  hash_inputs: bool = True) -> Generator[Any, None, tuple[Any, list[Path]]]:
    """Predict ``image`` with the streaming engine straight into its files (with ``trust_map`` the
    trust map too, where the run drew one); yields the engine's events and returns
    (``StreamedResult``, paths written). Written whole or not at all."""
    from labelfree_app.export import StreamedFiles

    paths.prediction.parent.mkdir(parents=True, exist_ok=True)
    before = {path: file_identity(path) for path in paths.all()}
    dtype = str(engine.resolve(settings).get("dtype", "float32"))
    try:
        with StreamedFiles(paths, dtype, pixel_size_um=getattr(image, "pixel_size_um", None),
                           protected_paths=inputs) as files:
            result = yield from engine.stream(image, settings, files)
            written = files.finish(result, engine.manifest, inputs, hash_inputs=hash_inputs, trust_map=trust_map)
    except BaseException:
        remove_written(before)
        raise
    return result, written


def save_result(result: PredictionResult, manifest: dict[str, Any], inputs: list[Path], paths: OutputPaths, *,
                pixel_size_um: dict[str, float] | None = None, save_steps: bool = False,
                trust_map: bool = False, hash_inputs: bool = True) -> list[Path]:
    """Check the destination and write one result (prediction, variance, steps, and with ``trust_map``
    the trust map where the run drew one) with provenance and pixel sizes; written whole or not at
    all. The one writer behind `predict`, `batch` and the GUI."""
    folder = paths.prediction.parent
    folder.mkdir(parents=True, exist_ok=True)
    ensure_free_space(folder, _estimate_bytes(result, save_steps, trust_map))
    before = {path: file_identity(path) for path in paths.all()}
    try:
        return write_result(result, manifest, inputs, paths, pixel_size_um=pixel_size_um,
                            save_steps=save_steps, trust_map=trust_map, hash_inputs=hash_inputs)
    except BaseException:  # a full disk, Ctrl-C: no prediction left without its variance
        remove_written(before)
        raise


def run_job(job: BatchJob, out_dir: Path, options: BatchOptions, engines: EngineCache,
            recorded: dict[str, dict[str, Any]] | None = None, *,
            image: Any | None = None) -> Generator[Any, None, BatchRow]:
    """Run one job; yields the engine's progress events and returns the report row.

    A job whose outputs all pass ``check_output`` (and match what the previous report ``recorded``)
    is skipped; a broken output is redone and the row's note says so. Closing the generator cancels
    the job before anything is written; an interruption while writing removes what this job wrote.
    ``image`` is the input already read (a door that looked at it to choose the model).
    Only ``FATAL_ERRORS`` escape: any other failure becomes a "failed" row with its one-sentence reason.
    """
    finish = yield from start_job(job, out_dir, options, engines, recorded, image=image)
    return finish()


def start_job(job: BatchJob, out_dir: Path, options: BatchOptions, engines: EngineCache,
              recorded: dict[str, dict[str, Any]] | None = None, *,
              image: Any | None = None) -> Generator[Any, None, Callable[[], BatchRow]]:
    """``run_job`` up to the network's result: returns ``finish``, which writes the files, fills in the row
    and returns it (``batch.writer`` calls it on a thread while the network runs on the next job)."""
    start = time.perf_counter()
    row = BatchRow(index=job.index, input=str(job.input.path), key=job.input.key, model=job.model.id)
    image = _read_for_trust_map(job, options, image)
    wanted = expected_outputs(job, out_dir, options, image)
    row.outputs = [str(p) for p in wanted]
    redo_note = ""
    if not options.overwrite:
        facts, redo_note = verify_outputs(wanted, out_dir, recorded)
        if facts is not None:
            row.status, row.files = "skipped", facts
            row.note = "already done (use --overwrite to redo)"
            return lambda: row
    paths = job.outputs(out_dir, options.format)
    remove_stale_temps(wanted if job.model.parts else paths.all())  # a merged job writes its one file only
    write: Callable[[], str] | None = None  # stays None when the job fails before writing
    with _failure_recorded(row, job):
        if job.model.parts:  # several models into one file (``batch.merge``)
            from labelfree_app.batch.merge import predict_merged

            note = yield from predict_merged(row, job, out_dir, options, engines, image)
            write = lambda: note  # noqa: E731  written already
        else:
            write = yield from _predict(row, job, paths, wanted, out_dir, options, engines, image)
    return partial(_finish, row, job, write, redo_note, start)


def _finish(row: BatchRow, job: BatchJob, write: Callable[[], str] | None, redo_note: str, start: float) -> BatchRow:
    """A job's second half: ``write`` its files and fill in ``row`` (its status, note and seconds)."""
    if write is not None:
        with _failure_recorded(row, job):
            note = write()
            row.note = "; ".join(n for n in (redo_note, note) if n)
            row.status = "done"
    row.seconds = round(time.perf_counter() - start, 3)
    return row


@contextlib.contextmanager
def _failure_recorded(row: BatchRow, job: BatchJob) -> Iterator[None]:
    """Turn a job's failure into a "failed" row with its one-sentence reason; ``FATAL_ERRORS`` escape."""
    try:
        yield
    except FATAL_ERRORS:
        raise
    except LabelFreeError as exc:
        row.status, row.error, row.outputs = "failed", str(exc), []
    except Exception as exc:  # an overnight batch records the bug and goes on
        _log.error("Unexpected error on %s:\n%s", job.input.path, traceback.format_exc())
        row.status, row.outputs = "failed", []
        row.error = (f"Unexpected error ({type(exc).__name__}: {exc}); the batch went on. Please report it "
                     f"with the log file {log_file_path()}.")


def _predict(row: BatchRow, job: BatchJob, paths: OutputPaths, wanted: list[Path], out_dir: Path,
             options: BatchOptions, engines: EngineCache, image: Any) -> Generator[Any, None, Callable[[], str]]:
    """``start_job``'s step for one model: predict; returns what writes its files (a streamed result's
    are written already) and fills in ``row``, returning the row's note."""
    for path in paths.all():  # a folder (or, for OME-Zarr, a file) of the user's at an output's name stays
        if options.format == "ome-zarr" or path.is_dir():
            check_replaceable(path)
    image = image if image is not None else read_input(job.input, options.rgb, options.position)
    engine = engines.get(job.model, options.settings.device)
    result: Any = None
    written: list[Path] | None = None
    if streams(engine, image, options.save_steps, settings=options.settings):
        result, written = yield from stream_result(engine, image, options.settings, job.input.files, paths,
                                                   trust_map=options.trust_map, hash_inputs=options.hash_inputs)
    else:
        result = yield from relay(engine.run(image, options.settings), without_result)

    def write() -> str:
        files = written if written is not None else save_result(
            result, engine.manifest, job.input.files, paths, pixel_size_um=getattr(image, "pixel_size_um", None),
            save_steps=options.save_steps, trust_map=options.trust_map, hash_inputs=options.hash_inputs)
        missing_map = _record_trust(row, result, job, options, expected=paths.trust in wanted,
                                    wrote=paths.trust in files)
        row.outputs = [str(p) for p in files]
        row.files = {relative_name(p, out_dir): facts for p in files if (facts := check_output(p)[0]) is not None}
        row.device = result.device
        score_note = ""
        if options.target_channel is not None:  # scored against a fluorescence channel of the input
            from labelfree_app.core.metrics import pearson_of_file, pearson_of_prediction

            if isinstance(result, PredictionResult):
                row.pearson_r, score_note = pearson_of_prediction(image, options.target_channel, result.prediction)
            else:
                row.pearson_r, score_note = pearson_of_file(image, options.target_channel, files[0])
        return " ".join([*result.notes, score_note, missing_map]).strip()

    return write


def _record_trust(row: BatchRow, result: Any, job: BatchJob, options: BatchOptions, *, expected: bool,
                  wrote: bool) -> str:
    """Put the result's trust estimate in the report row; returns why a trust map that was asked for
    was not written ("" when it was, or was not asked for)."""
    trust = getattr(result, "trust", None)  # None: not estimated (a 3D model, or no calibration)
    row.expected_r, row.expected_r_low, row.expected_r_high = (
        (round(trust.expected_r, 4), round(trust.low, 4), round(trust.high, 4)) if trust else (None, None, None))
    row.trust, row.trust_reason, row.trust_advice = (trust.level, trust.reason, trust.advice) if trust else ("", "", "")
    if not options.trust_map or wrote:
        return ""
    if not job.model.trust_map:
        return (f"No trust map: {job.model.id} draws none (only 2D models that recorded their training inputs "
                "do; fine-tune it with this version to get one).")
    cap = trust_recorder.STREAMED_MAP_MAX_PIXELS
    why = ("it could not be drawn for this image" if expected else
           f"an image this large (over {cap / 2**20:g} Mi pixels) is predicted in bands without one")
    return f"No trust map: {why}."


def process_job(job: BatchJob, out_dir: Path, options: BatchOptions, engines: EngineCache,
                recorded: dict[str, dict[str, Any]] | None = None, *, image: Any | None = None) -> BatchRow:
    """Run one job to the end (what a Dask worker executes); returns its report row."""
    return drive(run_job(job, out_dir, options, engines, recorded, image=image))
