"""``python -m labelfree_app.cli``: the `labelfree` command line."""

from __future__ import annotations

import sys

from labelfree_app.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
