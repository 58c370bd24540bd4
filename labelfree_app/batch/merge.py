"""Several stains of one input in one file: the merged job behind `predict --merge` and `batch --merge`.

A merged job is a ``BatchJob`` whose model is ``plan.merged_ref(models)`` (id ``A+B``, the models in
``parts``). ``process.run_job`` runs it as it runs any job (skipped when done, errors, the report row),
with ``predict_merged`` as its step: read the input once, run each model on it one after the other, and
write one multi-channel OME-TIFF ``<stem>__A+B.ome.tif`` through ``export.write_merged`` (the window's
Export calls ``save_merged`` too), so the pixels are the same from every door. It is one report row:
the file is the unit that is done or not, so a resume skips it whole or redoes it whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Generator, Sequence

from labelfree_app.batch.plan import BatchJob, ModelRef
from labelfree_app.batch.report import BatchRow
from labelfree_app.batch.verify import check_output, relative_name
from labelfree_app.core.drive import relay
from labelfree_app.core.events import PredictionResult, without_result
from labelfree_app.export import write_merged
from labelfree_app.io import ensure_free_space


def save_merged(results: Sequence[PredictionResult], manifests: Sequence[dict[str, Any]], inputs: list[Path],
                path: Path, *, pixel_size_um: dict[str, float] | None = None, hash_inputs: bool = True) -> Path:
    """Check the destination and write the merged file (``export.write_merged``); whole or not at all."""
    from labelfree_app.batch.process import file_identity, remove_written

    path.parent.mkdir(parents=True, exist_ok=True)
    ensure_free_space(path.parent, int(sum(r.prediction.nbytes for r in results) * 1.05) + 65536)
    before = {path: file_identity(path)}
    try:
        return write_merged(results, manifests, inputs, path, pixel_size_um=pixel_size_um, hash_inputs=hash_inputs)
    except BaseException:
        remove_written(before)
        raise


def weakest(results: Sequence[Any]) -> Any:
    """The least trustworthy channel's estimate (a merged file is as good as its weakest stain), or None."""
    estimates = [r.trust for r in results if getattr(r, "trust", None) is not None]
    return min(estimates, key=lambda t: t.expected_r) if estimates else None


def predict_merged(row: BatchRow, job: BatchJob, out_dir: Path, options: Any, engines: Any,
                   image: Any | None = None) -> Generator[Any, None, str]:
    """``process.run_job``'s step for a merged job: read the input once, run every model on it one after the
    other, write one file, fill in ``row``. Yields the engines' events; returns the row's note."""
    from labelfree_app.batch.process import read_input

    path = job.outputs(out_dir, options.format).prediction
    image = image if image is not None else read_input(job.input, options.rgb, options.position)
    results, manifests = [], []
    for part in job.model.parts:  # one after the other, on the one image read above
        engine = engines.get(part, options.settings.device)
        results.append((yield from relay(engine.run(image, options.settings), without_result)))
        manifests.append(engine.manifest)
    save_merged(results, manifests, job.input.files, path, pixel_size_um=getattr(image, "pixel_size_um", None),
                hash_inputs=options.hash_inputs)
    row.files = {relative_name(path, out_dir): facts for facts in [check_output(path)[0]] if facts is not None}
    row.device = results[0].device
    _record_trust(row, results, job.model.parts)
    return " ".join(f"{part.id}: {note}" for part, r in zip(job.model.parts, results) for note in r.notes)


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
