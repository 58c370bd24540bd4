"""What to open from a set of files, the same for every door (drop, File ▸ Open, Open folder, the
command line): plane series that may become z-stacks, single inputs in natural order, and files
whose names say they are fluorescence, which are not offered as inputs without a word."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from labelfree_app.gui.files.plane_series import looks_like_plane_series
from labelfree_app.io.channels import looks_fluorescent
from labelfree_app.io.reading import natural_sort_key

_NUMBER = re.compile(r"\d+")
NAMES_SHOWN = 3  # fluorescence files named in the message


@dataclass(frozen=True)
class OpenPlan:
    """``stacks``: plane series (natural order) that may open as one z-stack each; ``singles``: the
    other inputs; ``left_out``: fluorescence-named files set aside because there are other inputs;
    ``fluorescent_inputs``: fluorescence-named files opened anyway, since nothing else was given."""

    stacks: tuple[tuple[Path, ...], ...] = ()
    singles: tuple[Path, ...] = ()
    left_out: tuple[Path, ...] = ()
    fluorescent_inputs: tuple[Path, ...] = ()

    def note(self) -> str:
        """One sentence about fluorescence-named files ('' when there are none)."""
        if self.left_out:
            return (f"Left out {_count(self.left_out)} whose names say they are fluorescence "
                    f"({_names(self.left_out)}): LabelFree predicts from transmitted light; drop one on the "
                    "Prediction panel to compare with it, or open it by itself to use it as an input.")
        if self.fluorescent_inputs:
            return (f"{_names(self.fluorescent_inputs)}: the name says fluorescence, but LabelFree predicts from "
                    "transmitted light; check the Input channel, or open the bright-field or phase image instead.")
        return ""


def plan_opening(files: Sequence[Path]) -> OpenPlan:
    """Sort ``files`` naturally, set fluorescence-named ones aside when other inputs remain, and group
    the rest into plane series (single-plane files of one size whose names differ by one number)."""
    ordered = sorted((Path(f) for f in files), key=natural_sort_key)
    fluorescent = [f for f in ordered if looks_fluorescent(f.name)]
    inputs = [f for f in ordered if f not in fluorescent]
    if not inputs:
        return OpenPlan(singles=tuple(ordered), fluorescent_inputs=tuple(fluorescent))
    groups: dict[str, list[Path]] = {}
    for path in inputs:
        groups.setdefault(_NUMBER.sub("#", path.name.casefold()), []).append(path)
    stacks = tuple(tuple(group) for group in groups.values() if len(group) > 1 and looks_like_plane_series(group))
    in_stacks = {path for stack in stacks for path in stack}
    return OpenPlan(stacks=stacks, singles=tuple(p for p in inputs if p not in in_stacks), left_out=tuple(fluorescent))


def _count(paths: Sequence[Path]) -> str:
    return "1 file" if len(paths) == 1 else f"{len(paths)} files"


def _names(paths: Sequence[Path]) -> str:
    names = ", ".join(p.name for p in paths[:NAMES_SHOWN])
    return names + (f" and {len(paths) - NAMES_SHOWN} more" if len(paths) > NAMES_SHOWN else "")
