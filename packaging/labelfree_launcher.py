"""Entry point of the frozen app (PyInstaller): the ``labelfree`` CLI, or the GUI.

The GUI opens when the executable is ``labelfree-gui`` (the windowed Windows build), when it gets
no arguments (a double-click), or with ``gui``; anything else is the command line, including
``--self-test`` / ``self-test``.
"""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path


def main() -> int:
    """Dispatch to the GUI or the CLI; returns the exit code."""
    multiprocessing.freeze_support()
    args = sys.argv[1:]
    gui_executable = Path(sys.executable).stem.lower().endswith("-gui")
    if gui_executable or not args or args[0] == "gui":
        from labelfree_app.__main__ import main as gui_main

        return int(gui_main(args[1:] if args[:1] == ["gui"] else args) or 0)
    from labelfree_app.cli.main import main as cli_main

    return int(cli_main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
