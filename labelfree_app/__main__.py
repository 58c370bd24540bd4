"""``python -m labelfree_app`` starts the desktop app; the `labelfree` command line is the `cli` package beside it."""

from __future__ import annotations

import sys
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``labelfree-gui``: start the GUI (Qt is imported only now)."""
    from labelfree_app.gui.app import main as gui_main

    return gui_main(argv)


if __name__ == "__main__":
    sys.exit(main())
