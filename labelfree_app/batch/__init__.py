"""Batch export: many inputs × models to a folder, resumable, on one machine or a Dask cluster.

``plan_batch`` turns inputs into jobs (with ``--shard K/N`` selection), ``run_batch`` runs them
locally as a generator of events, ``run_batch_dask`` runs the same jobs on a cluster, and
``write_report`` writes ``batch_report.csv`` and ``.json``. Nothing here imports Qt.
"""

from labelfree_app.batch.plan import BatchJob, BatchPlan, ModelRef, Shard, expand_inputs, parse_shard, plan_batch
from labelfree_app.batch.process import BatchOptions, process_job
from labelfree_app.batch.report import BatchRow, merge_shard_reports, read_report, write_report
from labelfree_app.batch.local import BatchDone, JobFinished, JobStarted, run_batch

__all__ = [
    "BatchDone", "BatchJob", "BatchOptions", "BatchPlan", "BatchRow", "JobFinished", "JobStarted", "ModelRef",
    "Shard", "expand_inputs", "merge_shard_reports", "parse_shard", "plan_batch", "process_job", "read_report",
    "run_batch", "write_report",
]
