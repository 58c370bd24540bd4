"""How a prediction's reliability level looks everywhere in the window: one colour per level.

The levels are ``core.trust.LEVELS``: "good", "uncertain", "not trustworthy". The note under the
Prediction panel, the panel's title and frame, and the file list all take their colours from here,
so a result that should not be trusted looks the same wherever it is shown.
"""

from __future__ import annotations

from typing import Any

LEVEL_COLOURS = {"good": "#1e8e3e", "uncertain": "#b86e00", "not trustworthy": "#c62828"}  # text, frame
LEVEL_BACKGROUNDS = {"good": "#e8f5ec", "uncertain": "#fff3df", "not trustworthy": "#fdeaea"}  # the note
NOT_ESTIMATED = "not estimated for this model"
NOT_ESTIMATED_WHY = ("LabelFree estimates how far a prediction can be trusted for 2D models it has a calibration "
                     "for; 3D models and models without a calibration get no estimate. Compare with a stained "
                     "field to judge the result.")


def level_colour(level: str) -> str:
    """The colour of a level's text and frame (grey for an unknown level)."""
    return LEVEL_COLOURS.get(level, "#666666")


def level_background(level: str) -> str:
    return LEVEL_BACKGROUNDS.get(level, "#f0f0f0")


def trust_of(result: Any) -> Any:
    """A result's ``TrustEstimate``, or None (no result, or not estimated)."""
    return getattr(result, "trust", None) if result is not None else None


def interval_text(trust: Any) -> str:
    """'expected r 0.42 (0.30–0.55)'."""
    return f"expected r {trust.expected_r:.2f} ({trust.low:.2f}–{trust.high:.2f})"
