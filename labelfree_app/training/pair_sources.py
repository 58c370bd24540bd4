"""Where training pairs come from, as the CLI and the GUI name them, ending as ``PairSpec`` tuples.

``pairs_from_sources`` is the one dispatcher behind ``labelfree train``'s pair options and the
app's Train page: a CSV, two folders, multi-channel files, or one input/target. ``pairs_from_files``
pairs files (or folders) dropped as inputs and targets: by file name, else in name order when the
counts match (the Train page shows the pairing so the user can check it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from labelfree_app.errors import TrainingDataError
from labelfree_app.io.reading import natural_sort_key
from labelfree_app.training.config import PairSpec
from labelfree_app.training.datasets import (IMAGE_SUFFIXES, _stem, pairs_from_csv, pairs_from_dirs,
                                             pairs_from_multichannel)



def pairs_from_sources(
    *,
    pairs_csv: str | Path | None = None,
    input_dir: str | Path | None = None,
    target_dir: str | Path | None = None,
    multichannel: Sequence[str | Path] | None = None,
    input: str | None = None,
    target: str | None = None,
    input_channel: str | int | None = None,
    target_channel: str | int | None = None,
    required: bool = True,
) -> tuple[PairSpec, ...]:
    """Pairs from the first source given (CSV, two folders, multi-channel files, one pair)."""
    if pairs_csv:
        return pairs_from_csv(pairs_csv)
    if input_dir or target_dir:
        if not (input_dir and target_dir):
            raise TrainingDataError("Give both --input-dir and --target-dir (files are matched by name).")
        return pairs_from_dirs(input_dir, target_dir, input_channel=input_channel, target_channel=target_channel)
    if multichannel:
        if target_channel is None:
            raise TrainingDataError("Multi-channel files need --target-channel (and usually --input-channel).")
        return pairs_from_multichannel(multichannel, input_channel=input_channel, target_channel=target_channel)
    if input and target:
        return (PairSpec(input=input, target=target, input_channel=input_channel, target_channel=target_channel),)
    if required:
        raise TrainingDataError(
            "Say where the paired images are: --pairs pairs.csv, --input-dir A --target-dir B, "
            "--multichannel FILES --target-channel NAME, or --input X --target Y.")
    return ()


def image_files(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders replaced by the TIFF/PNG files directly inside them, in name order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted((p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)),
                                key=natural_sort_key))
        elif path not in found:
            found.append(path)
    return found


def pairs_from_files(inputs: Sequence[str | Path], targets: Sequence[str | Path]) -> tuple[tuple[PairSpec, ...], str]:
    """Pair dropped input files with target files; returns the pairs and how they were matched.

    Files (and the images in dropped folders) are matched by name without extension; when the
    names differ but the counts agree they are paired in name order (``a_bf.tif`` ↔ ``a_dapi.tif``).
    A single ``.csv`` among the inputs is read as a pairs file.
    """
    if len(inputs) == 1 and str(inputs[0]).lower().endswith(".csv") and not targets:
        return pairs_from_csv(inputs[0]), "from the pairs file"
    input_files, target_files = image_files(inputs), image_files(targets)
    if not input_files:
        raise TrainingDataError("Add the transmitted-light images (the inputs) first: drop files or a folder.")
    if not target_files:
        raise TrainingDataError(
            "Add the fluorescence images (the targets) too: every input needs its target image.")
    by_stem_in = {_stem(p): p for p in input_files}
    by_stem_tg = {_stem(p): p for p in target_files}
    if set(by_stem_in) == set(by_stem_tg) and len(by_stem_in) == len(input_files) == len(target_files):
        stems = sorted(by_stem_in, key=natural_sort_key)
        return tuple(PairSpec(str(by_stem_in[s]), str(by_stem_tg[s])) for s in stems), "by file name"
    if len(input_files) == len(target_files):
        ordered = zip(sorted(input_files, key=natural_sort_key), sorted(target_files, key=natural_sort_key))
        return tuple(PairSpec(str(a), str(b)) for a, b in ordered), "in name order (the names differ)"
    unmatched_in = [p for p in input_files if _stem(p) not in by_stem_tg]
    if len(input_files) > len(target_files) and unmatched_in:
        raise TrainingDataError(
            f"The input {unmatched_in[0].name} has no target with the same name ({len(input_files)} inputs, "
            f"{len(target_files)} targets); add its target or remove the input.", path=unmatched_in[0])
    unmatched_tg = [p for p in target_files if _stem(p) not in by_stem_in]
    extra = (unmatched_tg or target_files)[0]
    raise TrainingDataError(
        f"The target {extra.name} has no input with the same name ({len(input_files)} inputs, "
        f"{len(target_files)} targets); add its input or remove the target.", path=extra)
