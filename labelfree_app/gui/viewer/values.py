"""Pixel values as a person reads them: whole counts as integers, stain units without exponents,
and a variance also as its standard deviation (in the stain's units)."""

from __future__ import annotations

import math


def format_value(value: float | None) -> str:
    """``33020`` for 16-bit counts, ``1234.5`` or ``0.0312`` for floats; never ``3.302e+04``."""
    if value is None or not math.isfinite(value):
        return "–" if value is None else str(value)
    magnitude = abs(value)
    if value == int(value) and magnitude < 1e12:
        return str(int(value))
    if magnitude >= 1e12:
        return f"{value:.3e}"
    if magnitude >= 1000:
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.4g}"
    if magnitude >= 1e-4:
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return f"{value:.2e}" if magnitude else "0"


def format_variance(value: float | None) -> str:
    """A variance shown by its standard deviation, in the prediction's (stain) units, and said so."""
    if value is None or not math.isfinite(value) or value < 0:
        return format_value(value)
    return f"std ±{format_value(math.sqrt(value))}"
