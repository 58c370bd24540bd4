"""`labelfree watch`: predict each image a microscope writes into a folder, as soon as it is complete."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from labelfree_app.cli.exit_codes import EXIT_ERROR
from labelfree_app.cli.stop_signals import stop_on_first_interrupt, terminate_as_interrupt
from labelfree_app.cli.options import (RGB_CHOICES, add_predict_options, default_model_for, io_options,
                                       predict_settings, trust_lines)


def cmd_watch(args: argparse.Namespace) -> int:
    from labelfree_app.batch import BatchOptions, JobFinished
    from labelfree_app.batch.plan import resolve_models
    from labelfree_app.batch.watch import Waiting, WatchStopped, watch_folder
    from labelfree_app.io.channels import parse_channel
    from labelfree_app.models.registry import ModelRegistry

    registry = ModelRegistry()
    models = resolve_models(args.model or [default_model_for([args.folder], registry)], registry)
    options = BatchOptions(settings=predict_settings(args), rgb=RGB_CHOICES.get(args.rgb or "", "error"),
                           overwrite=args.overwrite, save_steps=bool(args.save_steps),
                           target_channel=parse_channel(args.target_channel), **io_options(args))
    stop = [False]
    idle_since = [time.monotonic()]
    problem = [""]

    def should_stop() -> bool:
        idle = args.stop_when_idle is not None and time.monotonic() - idle_since[0] >= 60 * args.stop_when_idle
        return stop[0] or idle

    print(f"Watching {args.folder} -> {args.output} with {', '.join(m.id for m in models)} "
          "(Ctrl-C to stop)", file=sys.stderr, flush=True)
    done: WatchStopped | None = None
    with stop_on_first_interrupt(stop), terminate_as_interrupt():
        for event in watch_folder(Path(args.folder), models, Path(args.output), options, should_stop=should_stop,
                                  settle_s=args.settle, poll_s=args.poll, events=not args.polling_only):
            if isinstance(event, JobFinished):
                idle_since[0] = time.monotonic()
                _show(event.row, args.quiet)
            elif isinstance(event, Waiting) and event.problem != problem[0]:
                problem[0] = event.problem
                if event.problem:
                    print(f"warning: {event.problem} Still watching.", file=sys.stderr, flush=True)
            elif isinstance(event, WatchStopped):
                done = event
    assert done is not None
    counts: dict[str, int] = {}
    for row in done.rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    report = f"; report: {done.report[0]}" if done.report else ""
    print(", ".join(f"{n} {status}" for status, n in counts.items() if n) + report)
    if done.fatal:
        print(f"error: {done.fatal}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_ERROR if counts.get("failed") else 0


def _show(row: Any, quiet: bool) -> None:
    label = f"{Path(row.input).name} × {row.model}"
    if row.status == "failed":
        print(f"failed: {label}: {row.error}", file=sys.stderr, flush=True)
        return
    if not quiet:
        print(f"{row.status}: {label} ({row.seconds:.1f} s)", file=sys.stderr, flush=True)
    for line in trust_lines(label, row, quiet=quiet) if row.status == "done" else []:
        print(line, file=sys.stderr, flush=True)


def register(sub: Any) -> None:
    """Add `watch` to the `labelfree` subcommand parser."""
    w = sub.add_parser("watch", help="predict each new image in a folder as soon as it is complete (resumable)",
                       description="Predicts every image that appears in FOLDER (and its sub-folders) once its "
                                   "size and modification time have settled, in arrival order, into OUTPUT, with "
                                   "batch_report.csv/.json kept current. Images already there are predicted first; "
                                   "a restart skips finished ones. Ctrl-C stops after the current file.")
    w.add_argument("folder", help="the folder the microscope writes into")
    w.add_argument("-o", "--output", required=True, help="output folder (one inside the watched folder is never "
                   "taken for input)")
    add_predict_options(w, many_models=True)
    w.add_argument("--overwrite", action="store_true", help="redo images whose outputs already exist")
    w.add_argument("--target-channel", help="fluorescence channel in the inputs to score (Pearson r in the report)")
    w.add_argument("--settle", type=_positive, default=2.0, metavar="SECONDS",
                   help="a file is complete once unchanged this long (default 2)")
    w.add_argument("--poll", type=_positive, default=1.0, metavar="SECONDS",
                   help="look at the folder at least this often (default 1)")
    w.add_argument("--polling-only", action="store_true",
                   help="do not wait for file-system events (network shares send none; polling finds the files)")
    w.add_argument("--stop-when-idle", type=_positive, metavar="MINUTES",
                   help="stop when no new image has been predicted for this long")
    w.add_argument("-q", "--quiet", action="store_true", help="only failures and warnings")
    w.set_defaults(func=cmd_watch)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds or minutes") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value
