"""Several stains of one input in one file: the merged job behind `predict --merge` and `batch --merge`.

A merged job is a ``BatchJob`` whose model is ``merged_ref(models)`` (id ``A+B``, the models in
``parts``): it reads the input once, runs each model on it one after the other, and writes one
multi-channel OME-TIFF ``<stem>__A+B.ome.tif`` through ``export.write_merged`` (the window's Export
calls ``save_merged`` too), so the pixels are the same from every door. It is one report row: the
file is the unit that is done or not, so a resume skips it whole or redoes it whole.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any, Generator, Sequence

from labelfree_app.batch.plan import BatchJob, BatchPlanError, ModelRef
from labelfree_app.batch.report import BatchRow
from labelfree_app.core.drive import relay
from labelfree_app.core.events import PredictionResult, without_result
from labelfree_app.errors import LabelFreeError
from labelfree_app.export import merged_id, write_merged
from labelfree_app.io import ensure_free_space
from labelfree_app.logfile import log_file_path

MERGED_KIND = "merged"


def merged_ref(models: Sequence[ModelRef]) -> ModelRef:
    """One 'model' for a merged job: id ``A+B`` and the models, in the order given, in ``parts``."""
    ids = [m.id for m in models]
    if len(models) < 2:
        raise BatchPlanError("--merge needs two or more models; name each with --model (-m A -m B).")
    if len(set(ids)) != len(ids):
        raise BatchPlanError("The same model is named twice; name each model once.")
    return ModelRef(id=merged_id(ids), path="", sha256="", kind=MERGED_KIND, parts=tuple(models))


def save_merged(results: Sequence[PredictionResult], manifests: Sequence[dict[str, Any]], inputs: list[Path],
                path: Path, *, pixel_size_um: dict[str, float] | None = None, hash_inputs: bool = True) -> Path:
    """Check the destination and write the merged file (``export.write_merged``); whole or not at all."""
    from labelfree_app.batch.process import _identity, _remove_written

    path.parent.mkdir(parents=True, exist_ok=True)
    ensure_free_space(path.parent, int(sum(r.prediction.nbytes for r in results) * 1.05) + 65536)
    before = {path: _identity(path)}
    try:
        return write_merged(results, manifests, inputs, path, pixel_size_um=pixel_size_um, hash_inputs=hash_inputs)
    except BaseException:
        _remove_written(before)
        raise


def weakest(results: Sequence[Any]) -> Any:
    """The least trustworthy channel's estimate (a merged file is as good as its weakest stain), or None."""
    estimates = [r.trust for r in results if getattr(r, "trust", None) is not None]
    return min(estimates, key=lambda t: t.expected_r) if estimates else None


def run_merged_job(job: BatchJob, out_dir: Path, options: Any, engines: Any,
                   recorded: dict[str, dict[str, Any]] | None = None, *,
                   image: Any | None = None) -> Generator[Any, None, BatchRow]:
    """``process.run_job`` for a merged job: skip when its file verifies, else read once, run every
    model, write one file. Yields the engines' events; returns the report row (model ``A+B``)."""
    from labelfree_app.batch.process import (FATAL_ERRORS, _relative, check_output, read_input, remove_stale_temps,
                                             verify_outputs)

    start = time.perf_counter()
    row = BatchRow(index=job.index, input=str(job.input.path), key=job.input.key, model=job.model.id)
    path = job.outputs(out_dir, options.format).prediction
    row.outputs = [str(path)]
    redo_note = ""
    if not options.overwrite:
        facts, redo_note = verify_outputs([path], out_dir, recorded)
        if facts is not None:
            row.status, row.files = "skipped", facts
            row.note = "already done (use --overwrite to redo)"
            return row
    remove_stale_temps([path])
    try:
        image = image if image is not None else read_input(job.input, options.rgb, options.position)
        results, manifests = [], []
        for part in job.model.parts:  # one after the other, on the one image read above
            engine = engines.get(part, options.settings.device)
            results.append((yield from relay(engine.run(image, options.settings), without_result)))
            manifests.append(engine.manifest)
        save_merged(results, manifests, job.input.files, path, pixel_size_um=getattr(image, "pixel_size_um", None),
                    hash_inputs=options.hash_inputs)
        row.files = {_relative(path, out_dir): facts for facts in [check_output(path)[0]] if facts is not None}
        row.device = results[0].device
        _record_trust(row, results, job.model.parts)
        notes = [f"{part.id}: {note}" for part, r in zip(job.model.parts, results) for note in r.notes]
        row.note = "; ".join(n for n in (redo_note, " ".join(notes)) if n)
        row.status = "done"
    except FATAL_ERRORS:
        raise
    except LabelFreeError as exc:
        row.status, row.error, row.outputs = "failed", str(exc), []
    except Exception as exc:  # an overnight batch records the bug and goes on
        import logging

        logging.getLogger(__name__).error("Unexpected error on %s:\n%s", job.input.path, traceback.format_exc())
        row.status, row.outputs = "failed", []
        row.error = (f"Unexpected error ({type(exc).__name__}: {exc}); the batch went on. Please report it "
                     f"with the log file {log_file_path()}.")
    row.seconds = round(time.perf_counter() - start, 3)
    return row


def _record_trust(row: BatchRow, results: Sequence[Any], parts: Sequence[ModelRef]) -> None:
    """The row's estimate is the weakest channel's, and says which channel it is."""
    trust = weakest(results)
    if trust is None:
        return
    which = next(p.id for p, r in zip(parts, results) if getattr(r, "trust", None) is trust)
    row.expected_r, row.expected_r_low, row.expected_r_high = (round(trust.expected_r, 4), round(trust.low, 4),
                                                               round(trust.high, 4))
    row.trust, row.trust_advice = trust.level, trust.advice
    row.trust_reason = f"{which} (the weakest channel): {trust.reason}"
