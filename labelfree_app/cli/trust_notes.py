"""What `predict` and `batch` say about a prediction's reliability (the estimate the job recorded)."""

from __future__ import annotations

from typing import Any


def trust_lines(label: str, row: Any) -> list[str]:
    """For a finished job's ``BatchRow``: the estimate ('cells.tif: expected r 0.81 (0.70-0.90): good')
    and, when the prediction is not trustworthy, a ``warning:`` line with the reason and the advice.
    Empty when the job made no estimate."""
    estimate = row.trust_estimate()
    if estimate is None:
        return []
    lines = [f"{label}: {estimate.summary()}"]
    if not estimate.trustworthy:
        lines.append(f"warning: {label}: the prediction is not trustworthy. {estimate.reason} {estimate.advice}")
    return lines
