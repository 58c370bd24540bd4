"""`labelfree devices`, `labelfree self-test` and `labelfree gui`: this installation and its app."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from labelfree_app.cli.exit_codes import EXIT_ERROR
from labelfree_app.errors import LabelFreeError

GUI_ENTRY_POINT = "labelfree-gui"  # [project.gui-scripts] in pyproject.toml


def cmd_devices(args: argparse.Namespace) -> int:
    """Print the compute devices found and the one ``auto`` picks."""
    from labelfree_app.core.devices import available_devices, select_device

    for info in available_devices():
        print(info.label)
    print(f"auto selects: {select_device('auto')}")
    return 0


def cmd_gui(args: argparse.Namespace) -> int:
    """Open the desktop app through its own entry point, which stands beside the CLI, not under it."""
    from importlib.metadata import entry_points

    found = list(entry_points(group="gui_scripts", name=GUI_ENTRY_POINT))
    if not found:
        raise LabelFreeError(f"The desktop app is not installed beside this command line; start it with "
                             f"{GUI_ENTRY_POINT} or python -m labelfree_app.")
    return int(found[0].load()(args.files) or 0)


def cmd_self_test(args: argparse.Namespace) -> int:
    """Check every bundled model on the demo input; 0 when all match the stored results."""
    from labelfree_app.selftest import ModelCheck, SelfTestStep, run_self_test

    def show(event: object) -> None:
        if isinstance(event, SelfTestStep):
            print(event.message, flush=True)
        elif isinstance(event, ModelCheck):
            print(event.line(), flush=True)

    report = run_self_test(on_event=show, device=args.device, out_dir=Path(args.output) if args.output else None,
                           model_ids=args.model)
    print(report.footer())  # the per-model lines were printed as they came
    return 0 if report.ok else EXIT_ERROR


def register(sub: Any) -> None:
    """Add `devices`, `gui` and `self-test` to the `labelfree` subcommand parser."""
    d = sub.add_parser("devices", help="list compute devices")
    d.set_defaults(func=cmd_devices)

    g = sub.add_parser("gui", help="open the desktop application")
    g.add_argument("files", nargs="*")
    g.set_defaults(func=cmd_gui)

    st = sub.add_parser("self-test", help="check every bundled model on the demo image against stored results")
    st.add_argument("--device", default="auto", help="auto (cuda → mps → cpu), cuda, mps or cpu")
    st.add_argument("-o", "--output", help="folder for the outputs (default: a new temporary folder)")
    st.add_argument("--model", "-m", action="append", help="check only this bundled model; repeat for several")
    st.set_defaults(func=cmd_self_test)
