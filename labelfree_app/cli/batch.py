"""`labelfree batch` (many inputs × models to a folder) and `labelfree batch-report` (merge shards)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from labelfree_app.cli.exit_codes import EXIT_ERROR, EXIT_INTERRUPTED
from labelfree_app.cli.stop_signals import stop_on_first_interrupt, terminate_as_interrupt
from labelfree_app.cli.options import (RGB_CHOICES, add_predict_options, default_model_for, io_options,
                                       predict_settings, trust_lines)


def cmd_batch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from labelfree_app.batch import BatchDone, BatchOptions, JobFinished, parse_shard, plan_batch, run_batch
    from labelfree_app.batch.local import JobProgress, JobStarted
    from labelfree_app.batch.plan import merged_ref, resolve_models
    from labelfree_app.io.channels import parse_channel
    from labelfree_app.models.registry import ModelRegistry

    registry = ModelRegistry()
    models = resolve_models(args.model or [default_model_for(args.inputs, registry)], registry)
    if args.merge:  # one job (one file, one report row) per input
        models = [merged_ref(models)]
    shard = parse_shard(args.shard) if args.shard else None
    plan = plan_batch(args.inputs, models, Path(args.output), shard=shard)
    options = BatchOptions(settings=predict_settings(args), rgb=RGB_CHOICES.get(args.rgb or "", "error"),
                           overwrite=args.overwrite, save_steps=bool(args.save_steps),
                           target_channel=parse_channel(args.target_channel), **io_options(args))
    where = f" ({shard.label}; {plan.other_shards} input(s) left to other shards)" if shard else ""
    print(f"{len(plan.jobs)} job(s): {len(plan.jobs) // max(1, len(models))} input(s) × {len(models)} model(s)"
          f" -> {plan.out_dir}{where}", file=sys.stderr)
    stop = [False]
    with stop_on_first_interrupt(stop), terminate_as_interrupt():
        if args.scheduler:
            from labelfree_app.batch.cluster import connect, run_batch_dask

            client = connect(args.scheduler)
            events = run_batch_dask(plan, options, client, should_stop=lambda: stop[0])
        else:
            client = None
            events = run_batch(plan, options, should_stop=lambda: stop[0])
        bar = tqdm(total=len(plan.jobs), unit="job", disable=args.quiet, dynamic_ncols=True)
        done: BatchDone | None = None
        try:
            for event in events:
                if isinstance(event, JobStarted):
                    bar.set_description_str(f"{event.job.input.path.name} × {event.job.model.id}")
                elif isinstance(event, JobProgress) and event.progress.stage in ("tiles", "sampling"):
                    bar.set_postfix_str(f"{event.progress.stage} {event.progress.done}/{event.progress.total}")
                elif isinstance(event, JobFinished):
                    bar.update(1)
                    if event.row.status == "failed":
                        bar.write(f"failed: {event.row.input} × {event.row.model}: {event.row.error}", file=sys.stderr)
                    elif event.row.status == "done":
                        label = f"{Path(event.row.input).name} × {event.row.model}"
                        for line in trust_lines(label, event.row, quiet=args.quiet):
                            bar.write(line, file=sys.stderr)
                elif isinstance(event, BatchDone):
                    done = event
        finally:
            bar.close()
            if client is not None:
                client.close()
    assert done is not None
    counts = done.counts
    print(", ".join(f"{n} {status}" for status, n in counts.items() if n) + f"; report: {done.report[0]}")
    if done.fatal:
        print(f"error: {done.fatal}", file=sys.stderr)
        return EXIT_ERROR
    if done.stopped:
        print("Stopped; run the same command again to finish (done files are skipped).", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_ERROR if counts.get("failed") else 0


def cmd_batch_report(args: argparse.Namespace) -> int:
    from labelfree_app.batch import merge_shard_reports

    csv_path, _, counts = merge_shard_reports(Path(args.output))
    print(", ".join(f"{n} {status}" for status, n in counts.items() if n) + f"; report: {csv_path}")
    return EXIT_ERROR if counts.get("failed") or counts.get("not run") else 0


def register(sub: Any) -> None:
    """Add `batch` and `batch-report` to the `labelfree` subcommand parser."""
    b = sub.add_parser("batch", help="predict many files with one or more models into a folder (resumable)",
                       description="Writes <name>__<model-id>.ome.tif per input and model, plus "
                                   "batch_report.csv/.json. Finished outputs are skipped when run again.")
    b.add_argument("inputs", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    b.add_argument("-o", "--output", required=True, help="output folder (sub-folders of folder inputs are kept)")
    add_predict_options(b, many_models=True)
    b.add_argument("--merge", action="store_true", help="one multi-channel OME-TIFF <name>__<A>+<B>.ome.tif per "
                   "input instead of one file per model (one report row per input)")
    b.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    b.add_argument("--target-channel", help="fluorescence channel in the inputs to score (Pearson r in the report)")
    b.add_argument("--shard", metavar="K/N", help="run only shard K of N (job arrays; merge with batch-report)")
    b.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on a Dask cluster: tcp://host:8786, or local:N for N local worker processes")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no estimate lines (warnings stay)")
    b.set_defaults(func=cmd_batch)

    r = sub.add_parser("batch-report", help="merge the shard reports of a sharded batch into batch_report.csv")
    r.add_argument("output", help="the batch's output folder")
    r.set_defaults(func=cmd_batch_report)
