"""Running a batch plan on a Dask distributed cluster (``labelfree batch --scheduler ADDRESS``).

Each job is one task running ``process_job`` (the same code as a local batch), so outputs and
report rows are identical. Each worker process keeps its own ``EngineCache``: a model is loaded
once per worker, not once per task. Workers write outputs straight to the output folder, which must
be on storage they all see; the client writes the report. Needs ``pip install labelfree_app[cluster]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Generator

from labelfree_app.batch.local import BatchDone, BatchEvent, Eta, JobFinished, holding_output_folder, report_extra
from labelfree_app.batch.plan import BatchJob, BatchPlan
from labelfree_app.batch.process import FATAL_ERRORS, BatchOptions, EngineCache, process_job
from labelfree_app.batch.report import BatchRow, carry_forward, read_report, recorded_files, write_report
from labelfree_app.errors import LabelFreeError

_WORKER_ENGINES: EngineCache | None = None


class ClusterError(LabelFreeError):
    """The Dask cluster cannot be used (missing package, unreachable scheduler)."""


def _engines() -> EngineCache:
    global _WORKER_ENGINES
    if _WORKER_ENGINES is None:
        _WORKER_ENGINES = EngineCache()
    return _WORKER_ENGINES


def worker_task(job: BatchJob, recorded: dict[str, dict[str, Any]] | None, *, out_dir: str,
                options: BatchOptions) -> BatchRow:
    """What a worker runs for one job (``recorded``: what the last report knew of its outputs).

    A fatal disk/folder error becomes a failed row with a flag.
    """
    try:
        return process_job(job, Path(out_dir), options, _engines(), recorded)
    except FATAL_ERRORS as exc:
        row = BatchRow(index=job.index, input=str(job.input.path), key=job.input.key, model=job.model.id,
                       status="failed", error=str(exc), note="fatal")
        return row


def connect(scheduler: str, *, timeout: str = "20s") -> Any:
    """A ``distributed.Client`` for an address, or for a new local cluster given ``local[:N]``."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ClusterError("Running on a cluster needs Dask; install it with "
                           "pip install 'labelfree_app[cluster]'.") from None
    try:
        if scheduler == "local" or scheduler.startswith("local:"):
            workers = int(scheduler.split(":", 1)[1]) if ":" in scheduler else None
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)
            return Client(cluster)
        return Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"Cannot reach the Dask scheduler at {scheduler} ({exc}); check the address "
                           "and that the scheduler is running.") from None


def run_batch_dask(plan: BatchPlan, options: BatchOptions, client: Any, *,
                   should_stop: Callable[[], bool] = lambda: False) -> Generator[BatchEvent, None, BatchDone]:
    """Run ``plan`` on ``client``'s cluster; yields ``JobFinished`` as tasks complete, then ``BatchDone``.

    ``should_stop`` cancels the tasks not yet started; running tasks finish (their writes are atomic).
    The client holds the output folder's lock while the tasks run.
    """
    with holding_output_folder(plan, options):
        return (yield from _run_on_cluster(plan, options, client, should_stop))


def _run_on_cluster(plan: BatchPlan, options: BatchOptions, client: Any,
                    should_stop: Callable[[], bool]) -> Generator[BatchEvent, None, BatchDone]:
    from distributed import as_completed

    previous = read_report(plan.out_dir / f"{plan.report_name}.json")
    recorded = recorded_files(previous)
    rows = {j.index: BatchRow(index=j.index, input=str(j.input.path), key=j.input.key, model=j.model.id)
            for j in plan.jobs}
    extra = report_extra(plan, options) | {"scheduler": str(getattr(client, "scheduler", ""))}
    futures = client.map(worker_task, plan.jobs, [recorded.get((j.input.key, j.model.id)) for j in plan.jobs],
                         out_dir=str(plan.out_dir), options=options, pure=False,
                         key=[f"labelfree-job-{j.index}-{j.input.key}-{j.model.id}" for j in plan.jobs])
    eta = Eta()
    stopped, fatal, finished = False, "", 0
    for future in as_completed(futures):
        if future.cancelled():
            continue
        row: BatchRow = future.result()
        if row.note == "fatal":
            row.note = ""
            fatal = fatal or row.error
        carry_forward([row], previous)
        rows[row.index] = row
        finished += 1
        eta.add(row)
        write_report(rows.values(), plan.out_dir, plan.report_name, extra=extra)
        # Tasks run in parallel: the remaining time divides by the number of workers.
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        remaining = eta.remaining(len(plan.jobs) - finished)
        yield JobFinished(row, finished, len(plan.jobs), None if remaining is None else remaining / workers)
        if (should_stop() or fatal) and not stopped:
            stopped = not fatal
            client.cancel([f for f in futures if not f.done()])
    report = write_report(rows.values(), plan.out_dir, plan.report_name, extra=extra)
    done = BatchDone(sorted(rows.values(), key=lambda r: r.index), report, stopped, fatal)
    yield done
    return done
