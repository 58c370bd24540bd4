"""Run on a huge image: the batch job `labelfree predict` runs, streamed into the cache (no Qt here).

A plane the window shows as an overview never fits the window's in-memory prediction, so a 2D
U-Net predicts it through ``batch.process.run_job`` (which streams it band by band, flat memory,
into a tiled OME-TIFF with its provenance), into a fresh run folder under
``saved_results_folder(input)`` in the cache. The window shows that file as an overview and
Export copies it, so the file is the one `labelfree predict` writes for the same input and model.
A cancelled or failed run leaves nothing; the window removes a result's folder when the result is
replaced or the window closes (``discard``). A window that never got to close (a crash, a kill, a
power cut) leaves its run folder behind: each run folder names its owner process (``OWNER_FILE``),
and the next window to start removes the folders whose owner no longer runs (``sweep_stale_runs``).
Diffusion and 3D models predict whole images in memory and are refused with one sentence.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

RUN_PREFIX = "run-"
OWNER_FILE = "owner.json"  # {"pid": ..., "started": the process's start time}
# A run folder without an owner note (an older version's, or one a crash cut off before the note)
# is left alone this long after its last change.
UNOWNED_GRACE_S = 24 * 3600


def too_large_to_run(name: str, shape: Sequence[int]) -> str:
    """The sentence for Run on an image shown as an overview with a model that predicts in memory."""
    return (f"{name} ({int(shape[-1])}×{int(shape[-2])} pixels) is too large for diffusion and 3D models, which "
            "predict the whole image in memory; choose a 2D U-Net model (it streams the image to a file) or "
            "crop the image.")


def huge_run_refusal(name: str, shape: Sequence[int], model: Any) -> str:
    """'' when ``model`` (a registry entry or manifest dict) can stream a huge image, else the sentence why not."""
    from labelfree_app.core.settings import is_diffusion

    dims = model.get("dims", 2) if isinstance(model, dict) else getattr(model, "dims", 2)
    return too_large_to_run(name, shape) if is_diffusion(model) or int(dims or 2) != 2 else ""


@dataclass(frozen=True)
class SavedResult:
    """A huge image's prediction, written by the batch job to files instead of held in memory.

    ``prediction`` (and ``variance``, with test-time augmentation) are tiled OME-TIFFs named as
    `labelfree predict` names them; the other fields come from their provenance, ``trust`` (a
    ``core.trust.TrustEstimate``, None when not estimated) too. It has no trust map to show."""

    prediction: Path
    variance: Path | None
    model_id: str
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    device: str = "cpu"
    notes: tuple[str, ...] = ()
    trust: Any = None

    @property
    def files(self) -> list[Path]:
        return [self.prediction] + ([self.variance] if self.variance is not None else [])


def saved_results_folder(input_path: Path) -> Path:
    """The cache folder of one input's runs (by its full path: two ``scan.tif`` never share one)."""
    from labelfree_app.paths import user_cache_dir

    digest = hashlib.sha1(str(Path(input_path).resolve()).encode("utf-8")).hexdigest()[:16]
    return user_cache_dir() / "predictions" / digest


def mark_owner(run_dir: Path) -> None:
    """Note in ``run_dir`` that this process owns it (so a later window can tell it from a crash's)."""
    import psutil

    note = {"pid": os.getpid(), "started": psutil.Process().create_time()}
    (Path(run_dir) / OWNER_FILE).write_text(json.dumps(note), encoding="utf-8")


def _owner_alive(run_dir: Path) -> bool:
    import psutil

    try:
        note = json.loads((run_dir / OWNER_FILE).read_text(encoding="utf-8"))
        pid, started = int(note["pid"]), float(note["started"])
    except (OSError, ValueError, KeyError, TypeError):
        try:
            return time.time() - run_dir.stat().st_mtime < UNOWNED_GRACE_S
        except OSError:
            return True
    try:
        return abs(psutil.Process(pid).create_time() - started) < 1.0  # the same process, not a reused pid
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:  # cannot tell: keep it
        return True


def sweep_stale_runs(root: Path | None = None) -> list[Path]:
    """Remove the run folders (and then empty input folders) under ``root`` (default: the cache's
    ``predictions`` folder) whose owner process no longer runs; returns the folders removed."""
    from labelfree_app.paths import user_cache_dir

    root = Path(root) if root is not None else user_cache_dir() / "predictions"
    removed: list[Path] = []
    for run_dir in sorted(root.glob(f"*/{RUN_PREFIX}*")) if root.is_dir() else []:
        if run_dir.is_dir() and not _owner_alive(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
            if not run_dir.exists():
                removed.append(run_dir)
    for folder in {run_dir.parent for run_dir in removed}:
        try:
            folder.rmdir()  # only when empty: another input's runs or a live run stay
        except OSError:
            pass
    return removed


def discard(result: Any) -> None:
    """Remove the run folder of a ``SavedResult`` (only a run folder this module made; else nothing)."""
    if isinstance(result, SavedResult) and result.prediction.parent.name.startswith(RUN_PREFIX):
        shutil.rmtree(result.prediction.parent, ignore_errors=True)


def _trust_of(meta: dict[str, Any], row: Any) -> Any:
    """The estimate recorded in the prediction's provenance (with its features), else the report row's."""
    from labelfree_app.core.trust import TrustEstimate

    try:
        return TrustEstimate.from_dict(meta["trust"]) if meta.get("trust") else row.trust_estimate()
    except (KeyError, TypeError, ValueError):
        return row.trust_estimate()


def batch_options(settings: dict[str, Any], *, overwrite: bool, target_channel: int | str | None = None) -> Any:
    """The window's prediction settings as the batch job's ``BatchOptions`` (a colour camera's bright-field
    read as luminance, as the window reads it)."""
    from labelfree_app.batch.process import BatchOptions
    from labelfree_app.core.engine import PredictSettings

    known = set(PredictSettings.__dataclass_fields__) - {"frames", "preview_interval_s"}
    return BatchOptions(settings=PredictSettings(**{k: v for k, v in settings.items() if k in known}),
                        overwrite=overwrite, target_channel=target_channel, rgb="luminance")


def saved_result_of(row: Any) -> SavedResult:
    """The prediction a finished job (its report ``row``) wrote, as a ``SavedResult`` filled from the
    written file's provenance (the report row's figures where the provenance lacks them)."""
    from labelfree_app.io import read_provenance

    meta = read_provenance(Path(row.outputs[0]))
    variance = next((Path(p) for p in row.outputs[1:] if Path(p).name.endswith("__variance.ome.tif")), None)
    return SavedResult(Path(row.outputs[0]), variance, str(row.model), dict(meta.get("settings") or {}),
                       float(meta.get("seconds") or row.seconds), row.device or "cpu", tuple(meta.get("notes") or ()),
                       _trust_of(meta, row))


def predict_to_file(image: Any, package: Any, settings: dict[str, Any], inputs: Sequence[Path], engines: Any, *,
                    out_dir: Path | None = None) -> Iterator[Any]:
    """Predict the huge ``image`` (read from ``inputs``) with ``package`` through the batch job into a
    new run folder in ``out_dir`` (default ``saved_results_folder``); yields the job's progress and
    last a ``SavedResult``. Closing the generator (Cancel) or a failure removes the run folder."""
    from labelfree_app.batch.plan import BatchInput, BatchJob, model_ref
    from labelfree_app.batch.process import run_job
    from labelfree_app.errors import LabelFreeError, SettingsError

    files = [Path(p) for p in inputs]
    refusal = huge_run_refusal(files[0].name, image.data.shape, package.manifest.to_dict())
    if refusal:
        raise SettingsError(refusal)
    if image.data.ndim == 5:  # the viewers show one time point: predict that one
        settings = {"time_point": 0, **settings}
    options = batch_options(settings, overwrite=True)
    folder = Path(out_dir) if out_dir is not None else saved_results_folder(files[0])
    folder.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=folder))
    entry = BatchInput(files[0], planes=tuple(files) if len(files) > 1 else ())
    try:
        mark_owner(run_dir)
        row = yield from run_job(BatchJob(0, entry, model_ref(package)), run_dir, options, engines)
        if row.status != "done":
            raise LabelFreeError(row.error or f"Predicting {files[0].name} failed.", path=files[0])
        yield saved_result_of(row)
    except BaseException:  # cancelled (even after the files were written) or failed: nothing is left
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
