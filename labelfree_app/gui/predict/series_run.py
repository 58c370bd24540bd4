"""Predict every time point of a series in the window: the batch job, one time point at a time (no Qt).

*Predict all time points* runs ``batch.process.run_job`` (the job `labelfree predict` runs) once per
time point, with ``time_point=t``, into its own folder ``t00000/`` of one run folder in the cache
(``streamed_run.saved_results_folder``). One job per time point, rather than the whole series into
one TCZYX file, because: each frame's file is complete (renamed into place) the moment its job
ends, so the window can show it at once; memory stays that of one frame, whatever the model (the
in-memory engine stacks every time point before writing; the streamed one writes one file renamed
at the end); and Cancel stops the running frame's job, which removes what it wrote, while the
frames already done stay. Export assembles the frames into one TCZYX OME-TIFF
(``series_export``). The input is hashed for the provenance once, at export, not per frame.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from labelfree_app.core.events import Progress
from labelfree_app.gui.streamed_run import RUN_PREFIX, batch_options, mark_owner, saved_results_folder

STAGE = "time points"


@dataclass(frozen=True)
class FrameDone:
    """One time point's prediction, written: ``prediction`` (and ``variance``) are CZYX OME-TIFFs."""

    t: int
    prediction: Path
    variance: Path | None
    seconds: float
    device: str = "cpu"


@dataclass
class SeriesResult:
    """The frames predicted so far for one image, model and settings (kept in ``record.extra``)."""

    run_dir: Path
    model_id: str
    count: int
    settings: dict[str, Any]
    frames: dict[int, FrameDone] = field(default_factory=dict)

    def missing(self) -> list[int]:
        return [t for t in range(self.count) if t not in self.frames]

    def complete(self) -> bool:
        return not self.missing()

    def matches(self, model_id: str, settings: dict[str, Any]) -> bool:
        return self.model_id == model_id and self.settings == settings and self.run_dir.is_dir()


def new_series(input_path: Path, model_id: str, count: int, settings: dict[str, Any],
               out_dir: Path | None = None) -> SeriesResult:
    """A fresh run folder (owned by this process, so a crash's is swept) for a series' frames."""
    folder = Path(out_dir) if out_dir is not None else saved_results_folder(input_path)
    folder.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=folder))
    mark_owner(run_dir)
    return SeriesResult(run_dir, model_id, int(count), dict(settings))


def discard_series(series: SeriesResult | None) -> None:
    """Remove a series' run folder (its frames) from the cache."""
    if series is not None and series.run_dir.name.startswith(RUN_PREFIX):
        shutil.rmtree(series.run_dir, ignore_errors=True)


def frame_folder(series: SeriesResult, t: int) -> Path:
    return series.run_dir / f"t{t:05d}"


def predict_series(image: Any, package: Any, series: SeriesResult, inputs: Sequence[Path], engines: Any,
                   times: Sequence[int] | None = None) -> Iterator[Any]:
    """Predict ``times`` (default: the frames ``series`` lacks) of ``image`` one job each; yields a
    ``Progress`` before each frame and a ``FrameDone`` after it. Closing the generator (Cancel) stops
    the running job, whose files are removed; the frames done stay."""
    from labelfree_app.batch.plan import BatchInput, BatchJob, model_ref
    from labelfree_app.batch.process import run_job
    from labelfree_app.errors import LabelFreeError

    files = [Path(p) for p in inputs]
    todo = list(series.missing() if times is None else times)
    entry = BatchInput(files[0], planes=tuple(files) if len(files) > 1 else ())
    started = time.perf_counter()
    for done, t in enumerate(todo):
        yield Progress(STAGE, done, len(todo), f"Predicting time point {t + 1} of {series.count}")
        options = dataclasses.replace(batch_options({**series.settings, "time_point": t}, overwrite=True),
                                      hash_inputs=False)  # hashed once, at export
        folder = frame_folder(series, t)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            row = yield from _quiet(run_job(BatchJob(t, entry, model_ref(package)), folder, options, engines,
                                            image=image))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if row.status != "done":
            shutil.rmtree(folder, ignore_errors=True)
            raise LabelFreeError(row.error or f"Predicting time point {t + 1} of {files[0].name} failed.",
                                 path=files[0])
        outputs = [Path(p) for p in row.outputs]
        variance = next((p for p in outputs[1:] if p.name.endswith("__variance.ome.tif")), None)
        frame = FrameDone(t, outputs[0], variance, float(row.seconds), row.device or "cpu")
        series.frames[t] = frame
        yield frame
    yield Progress(STAGE, len(todo), len(todo),
                   f"{len(todo)} time points predicted in {time.perf_counter() - started:.1f} s")


def _quiet(job: Any) -> Any:
    """Run ``job`` (a generator) to its return value, yielding nothing of its per-frame progress (the
    series' own progress counts frames), but staying a generator so Cancel can close it between events."""
    try:
        while True:
            next(job)
            yield None
    except StopIteration as stop:
        return stop.value
    finally:
        job.close()
