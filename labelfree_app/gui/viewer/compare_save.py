"""Saving a comparison with ground truth: a PNG of its panels and a small JSON of its figures
(Pearson r, Otsu mask Dice, where and against what), side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from labelfree_app import __version__


def comparison_figures(dialog: Any) -> dict[str, Any]:
    """What the comparison measured, for a person or a script reading the JSON."""
    height, width = dialog.observed.shape
    return {
        "pearson_r": round(float(dialog.pearson_r), 4),
        "otsu_mask_dice": round(float(dialog.mask_dice), 4),
        "ground_truth": dialog.source or "a channel of the file",
        "where": dialog.where or "the shown plane",
        "size_px": [int(width), int(height)],
        "difference_maps": sorted(dialog.maps),
        "note": "difference maps use z-scored images; masks are Otsu thresholds of each image",
        "labelfree_version": __version__,
    }


def save_comparison(dialog: Any, png: Path) -> list[Path]:
    """Write ``png`` (the panels as shown) and ``<png stem>.json`` (the figures); returns both paths."""
    from labelfree_app.io.atomic import atomic_path

    png = Path(png).with_suffix(".png")
    figures = png.with_suffix(".json")
    with atomic_path(png) as temp:
        if not dialog.panels_widget.grab().save(str(temp), "PNG"):
            raise OSError(f"{png} could not be written")
    with atomic_path(figures) as temp:
        Path(temp).write_text(json.dumps(comparison_figures(dialog), indent=1), encoding="utf-8")
    return [png, figures]
