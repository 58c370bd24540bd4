"""`labelfree`: the parser, the dispatch to each command's module, and the guard around every command.

Every user error is a ``LabelFreeError``: the CLI prints its one sentence to stderr and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from labelfree_app import __version__
from labelfree_app.cli import batch, models, predict, system, train, watch
from labelfree_app.cli.exit_codes import EXIT_BROKEN_PIPE, EXIT_ERROR, EXIT_INTERRUPTED
from labelfree_app.errors import LabelFreeError
from labelfree_app.logfile import log_file_path, setup_logging

COMMANDS = (predict, models, system, train, batch, watch)  # each module's register() adds its sub-commands


def build_parser() -> argparse.ArgumentParser:
    """The `labelfree` parser with every command's options."""
    parser = argparse.ArgumentParser(prog="labelfree", description="Predict fluorescence images from transmitted light.")
    parser.add_argument("--version", action="version", version=f"LabelFree {__version__}")
    parser.add_argument("--self-test", action="store_true", help="same as the self-test command")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `labelfree` command; returns its exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--self-test"]:  # `labelfree --self-test [options]` is `labelfree self-test [options]`
        argv[0] = "self-test"
    args = parser.parse_args(argv)
    try:
        setup_logging()  # tracebacks go to the log file, never to the terminal
    except OSError:
        pass  # an unwritable log folder must not stop the command
    try:
        return int(args.func(args) or 0)
    except LabelFreeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("Interrupted; no partial output was left behind.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `labelfree … | head`: the reader left, as with any command-line tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 - the net under the specific sentences
        return _unexpected(exc)


def _unexpected(exc: BaseException) -> int:
    """Log the traceback to the log file; the user gets one sentence with the log's path."""
    import logging

    where = log_file_path()
    try:
        setup_logging()
        logging.getLogger("labelfree_app.cli").error("unexpected error", exc_info=exc)
        saved = f"the details are in {where}"
    except OSError:
        saved = "the log file could not be written"
    print(f"error: unexpected {type(exc).__name__} ({exc}); {saved}. Please report it with that file.",
          file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
