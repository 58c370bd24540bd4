"""`labelfree train` and `labelfree evaluate` (registered into the main parser)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    """Add the training commands to the `labelfree` subcommand parser."""
    return None
