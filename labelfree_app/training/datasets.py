"""Paired training images: finding the pairs, reading them, checking them, normalizing them.

Four ways to name pairs, all ending as a tuple of ``PairSpec``:
(a) a CSV with input / target path columns (``pairs_from_csv``), (b) an input folder and a
target folder matched by file name (``pairs_from_dirs``), (c) multi-channel files holding both
(``pairs_from_multichannel``), (d) a Z-stack input assembled from per-plane files
(``PairSpec(input="planes/z_*.png", ...)``, or a ``pairs.csv`` whose input cell is a glob).

``load_pair`` reads one pair and returns normalized float32 arrays shaped (C, *spatial):
the input z-scored (or percentile-scaled) over the whole image, the target z-scored over the
whole image, so a trained model predicts in z-score units of its training targets.
"""

from __future__ import annotations

import csv
import os
import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from labelfree_app.errors import LabelFreeError, TrainingDataError
from labelfree_app.io.channels import parse_channel
from labelfree_app.io.reading import natural_sort_key
from labelfree_app.training.pair_signal import check_signal
from labelfree_app.models.package import sha256_of_file
from labelfree_app.training.config import PairSpec

INPUT_COLUMNS = ("input", "path_signal", "signal", "source")
TARGET_COLUMNS = ("target", "path_target")
INPUT_CHANNEL_COLUMNS = ("input_channel", "channel_signal", "signal_channel")
TARGET_CHANNEL_COLUMNS = ("target_channel", "channel_target")
IMAGE_SUFFIXES = (".tif", ".tiff", ".png")


@dataclass(frozen=True)
class LoadedPair:
    """Normalized pixels of one pair: ``input`` (C_in, *spatial), ``target`` (1, *spatial)."""

    spec: PairSpec
    input: np.ndarray
    target: np.ndarray
    z_as_channels: bool
    scale_known: bool = False  # rescaled to the model's canonical pixel size

    @property
    def weight(self) -> float:
        return self.spec.weight

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.target.shape[1:])

    @property
    def name(self) -> str:
        return Path(self.spec.target).name


# --- naming pairs ----------------------------------------------------------------------------
def pairs_from_csv(csv_path: str | Path) -> tuple[PairSpec, ...]:
    """Read pairs from a CSV with ``input`` and ``target`` columns (fnet's ``path_signal`` /
    ``path_target`` also work) and optional ``input_channel`` / ``target_channel`` columns.
    Relative paths are relative to the CSV's folder."""
    csv_path = Path(csv_path)
    check_regular_file(csv_path, "pairs file", "check the path")
    columns, rows = _read_pairs_table(csv_path)
    input_col = _pick_column(columns, INPUT_COLUMNS)
    target_col = _pick_column(columns, TARGET_COLUMNS)
    if input_col is None or target_col is None:
        raise TrainingDataError(
            f"The pairs file {csv_path} needs an 'input' and a 'target' column (found: "
            f"{', '.join(columns) or 'none'}); add a header row naming them.", path=csv_path)
    in_ch_col = _pick_column(columns, INPUT_CHANNEL_COLUMNS)
    tg_ch_col = _pick_column(columns, TARGET_CHANNEL_COLUMNS)
    base = csv_path.parent
    pairs = []
    for number, row in enumerate(rows, start=2):
        if not row.get(input_col) and not row.get(target_col):
            continue
        if not row.get(input_col) or not row.get(target_col):
            raise TrainingDataError(
                f"Row {number} of {csv_path} lacks an input or a target path; fill in both.", path=csv_path)
        pairs.append(PairSpec(
            input=_resolve(base, row[input_col]),
            target=_resolve(base, row[target_col]),
            input_channel=parse_channel(row.get(in_ch_col or "", "")),
            target_channel=parse_channel(row.get(tg_ch_col or "", "")),
        ))
    if not pairs:
        raise TrainingDataError(f"The pairs file {csv_path} lists no pairs; add one row per pair.", path=csv_path)
    return tuple(pairs)


def _read_pairs_table(csv_path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header (lower case) and rows of a pairs CSV in UTF-8; a row with more cells than the header, or
    another encoding (UTF-16, as some spreadsheets save "Unicode text"), is one sentence."""
    head = csv_path.read_bytes()[:4] if csv_path.stat().st_size else b""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(head) >= 2 and 0 in head[:2]):
        raise TrainingDataError(f"The pairs file {csv_path} is saved as UTF-16; save it as CSV UTF-8 (comma "
                                "delimited) and try again.", path=csv_path)
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip().lower() for c in (reader.fieldnames or [])]
            rows = []
            for row in reader:
                if None in row:
                    raise TrainingDataError(
                        f"Row {reader.line_num} of {csv_path} has more cells than its header names "
                        f"({len(columns)}); remove the extra cells or name their column.", path=csv_path)
                rows.append({(k or "").strip().lower(): (v or "").strip() for k, v in row.items()})
    except UnicodeDecodeError as exc:
        raise TrainingDataError(f"The pairs file {csv_path} is not UTF-8 text (byte {exc.start} cannot be read); "
                                "save it as CSV UTF-8 and try again.", path=csv_path) from exc
    except csv.Error as exc:
        raise TrainingDataError(f"The pairs file {csv_path} is not a readable CSV ({exc}); check it.",
                                path=csv_path) from exc
    return columns, rows


def pairs_from_dirs(
    input_dir: str | Path,
    target_dir: str | Path,
    *,
    input_channel: str | int | None = None,
    target_channel: str | int | None = None,
) -> tuple[PairSpec, ...]:
    """Pair files of two folders by file name without extension (``a.tif`` ↔ ``a.png``)."""
    inputs = _images_by_stem(Path(input_dir))
    targets = _images_by_stem(Path(target_dir))
    unmatched = sorted(set(inputs) - set(targets))
    if unmatched:
        raise TrainingDataError(
            f"The input {inputs[unmatched[0]]} has no target of the same name in {target_dir}; "
            "add it or remove the input.", path=inputs[unmatched[0]])
    missing_inputs = sorted(set(targets) - set(inputs))
    if missing_inputs:
        raise TrainingDataError(
            f"The target {targets[missing_inputs[0]]} has no input of the same name in {input_dir}; "
            "add it or remove the target.", path=targets[missing_inputs[0]])
    return tuple(
        PairSpec(input=str(inputs[stem]), target=str(targets[stem]),
                 input_channel=input_channel, target_channel=target_channel)
        for stem in sorted(inputs, key=natural_sort_key)
    )


def pairs_from_multichannel(
    paths: Iterable[str | Path], *, input_channel: str | int | None, target_channel: str | int
) -> tuple[PairSpec, ...]:
    """Pairs from multi-channel files that hold the input and the target channel each."""
    pairs = tuple(PairSpec(input=str(p), target=str(p), input_channel=input_channel,
                           target_channel=target_channel) for p in paths)
    if not pairs:
        raise TrainingDataError("No multi-channel files were given; name at least one file.")
    return pairs


def plane_paths(spec: PairSpec) -> tuple[Path, ...]:
    """The per-plane files of a Z-stack input, in natural Z order."""
    if isinstance(spec.input, tuple):
        return tuple(Path(p) for p in spec.input)
    found = sorted(glob.glob(spec.input), key=natural_sort_key)
    return tuple(Path(p) for p in found)


def check_pairs_exist(pairs: Sequence[PairSpec]) -> None:
    """Fail before training with one sentence naming the first missing file."""
    if not pairs:
        raise TrainingDataError("No training pairs were given; name a pairs CSV or an input and a target folder.")
    for spec in pairs:
        inputs = plane_paths(spec) if spec.is_plane_series else (Path(spec.input),)
        if spec.is_plane_series and not inputs:
            raise TrainingDataError(
                f"No plane files match the input pattern {spec.input}; check the pattern.", path=str(spec.input))
        for path in (*inputs, Path(spec.target)):
            check_regular_file(path, "training file", "fix the path or remove the pair")


def check_regular_file(path: Path, what: str, fix: str) -> None:
    """Refuse, naming ``path``, anything but an existing regular file: a folder, or a FIFO or device that
    reading would block on or never finish."""
    if path.is_file():
        return
    if path.is_dir():
        why = "is a folder, not an image file"
    elif os.path.lexists(path) and path.exists():
        why = "is not a regular file (a pipe or a device)"
    else:
        why = "does not exist"
    raise TrainingDataError(f"The {what} {path} {why}; {fix}.", path=path)


# --- reading pairs ---------------------------------------------------------------------------
def read_input_image(spec: PairSpec) -> Any:
    """The raw input as an ``io.Image`` (a plane series is assembled into one Z-stack)."""
    from labelfree_app import io

    if spec.is_plane_series:
        image = io.read_plane_series([str(p) for p in plane_paths(spec)])
    else:
        image = io.read_image(spec.input)
    return image if spec.plane is None else select_plane(image, spec.plane, spec.describe_input())


def select_plane(image: Any, plane: int, label: str) -> Any:
    """One Z plane of ``image`` as a single-plane image (the same file seen as a 2D field)."""
    from dataclasses import replace

    planes = image.shape_zyx[0]
    if not 0 <= plane < planes:
        raise TrainingDataError(f"{label} has {planes} z-plane(s); plane {plane} does not exist.",
                                path=getattr(image, "path", None))
    data = image.data[..., plane:plane + 1, :, :]
    return replace(image, data=data, metadata={**image.metadata, "plane": plane})


def read_input_zyx(spec: PairSpec, image: Any | None = None) -> np.ndarray:
    """The raw input pixels of one pair as (Z, Y, X): the chosen (or transmitted) channel."""
    from labelfree_app import io

    image = image if image is not None else _read(read_input_image, spec, spec.describe_input())
    _check_no_time(image, spec.describe_input())
    try:
        if spec.input_channel is not None:
            return np.asarray(image.channel(spec.input_channel), dtype=np.float32)
        if len(image.channel_names) == 1 or image.data.shape[0] == 1:
            return np.asarray(image.data[0], dtype=np.float32)
        return np.asarray(image.data[io.find_transmitted_channel(image)], dtype=np.float32)
    except LabelFreeError as exc:
        raise TrainingDataError(f"Input {spec.describe_input()}: {exc}", path=exc.path) from exc


def read_target_zyx(spec: PairSpec) -> np.ndarray:
    """The raw target pixels of one pair as (Z, Y, X) float32."""
    return read_target_raw(spec).astype(np.float32, copy=False)


def read_target_raw(spec: PairSpec) -> np.ndarray:
    """The target pixels of one pair as (Z, Y, X) in the file's own pixel type."""
    from labelfree_app import io

    image = _read(io.read_image, spec.target, spec.target)
    _check_no_time(image, spec.target)
    try:
        if spec.target_channel is not None:
            return np.asarray(image.channel(spec.target_channel))
    except LabelFreeError as exc:
        raise TrainingDataError(f"Target {spec.target}: {exc}", path=spec.target) from exc
    if image.data.shape[0] != 1:
        raise TrainingDataError(
            f"The target {spec.target} has {image.data.shape[0]} channels; name the target channel "
            "(e.g. a 'target_channel' column).", path=spec.target)
    return np.asarray(image.data[0])


def read_pair_zyx(spec: PairSpec) -> tuple[np.ndarray, np.ndarray]:
    """Raw (input, target) as (Z, Y, X) arrays, checked to cover the same YX field."""
    source, target, _ = _read_pair(spec)
    return source, target


def _read_pair(spec: PairSpec) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Raw (input, target) as (Z, Y, X) and the input's pixel size in µm (the spec's, else the file's)."""
    check_pairs_exist([spec])
    image = _read(read_input_image, spec, spec.describe_input())
    source = read_input_zyx(spec, image)
    target = read_target_zyx(spec)
    if source.shape[-2:] != target.shape[-2:]:
        raise TrainingDataError(
            f"The input {spec.describe_input()} is {_yx(source)} but its target {spec.target} is "
            f"{_yx(target)}; paired images must be registered and the same size.", path=spec.target)
    check_signal(source, target, spec)
    return source, target, spec.pixel_size_um or image.pixel_size_um.get("X")


def rescale_yx(array: np.ndarray, factor: float) -> np.ndarray:
    """Resample the Y and X axes of (Z, Y, X) by ``factor`` (> 1 enlarges), antialiased."""
    from labelfree_app.training.augment import zoom_window

    shape = tuple(max(1, int(round(s * factor))) for s in array.shape[-2:])
    return zoom_window(array, shape)


def arrange_pair(
    source: np.ndarray, target: np.ndarray, *, dims: int, spec: PairSpec
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Give raw (Z, Y, X) input and target the network's layout (C, *spatial).

    2D: a single-plane target with a multi-plane input takes the planes as channels.
    3D: input and target must have the same number of planes.
    """
    if dims == 2:
        if target.shape[0] != 1:
            raise TrainingDataError(
                f"The target {spec.target} is a {target.shape[0]}-plane stack but a 2D model predicts "
                "one plane; train a 3D model or give a single-plane (e.g. max-projected) target.",
                path=spec.target)
        return source, target, source.shape[0] > 1
    if source.shape[0] != target.shape[0]:
        raise TrainingDataError(
            f"The input {spec.describe_input()} has {source.shape[0]} planes but its target {spec.target} "
            f"has {target.shape[0]}; a 3D model needs stacks with the same planes.", path=spec.target)
    return source[np.newaxis], target[np.newaxis], False


def normalize_input(array: np.ndarray, method: str) -> np.ndarray:
    """Normalize the whole input (all planes together), as the prediction engine does."""
    from labelfree_app.core.normalize import fit_normalizer

    return fit_normalizer(array, method).apply(array).astype(np.float32, copy=False)


def normalize_target(array: np.ndarray) -> np.ndarray:
    """Z-score the whole target image; predictions come out in these units."""
    from labelfree_app.core.normalize import fit_normalizer

    return fit_normalizer(array, "zscore").apply(array).astype(np.float32, copy=False)


def load_pair(spec: PairSpec, *, dims: int, input_normalization: str,
              pixel_size_um: float | None = None) -> LoadedPair:
    """Read, check, arrange and normalize one pair.

    With a canonical ``pixel_size_um``, a pair whose pixel size is known (from the spec or the
    file) is resampled to it in Y and X (input and target alike) and marked ``scale_known``.
    """
    source, target, size = _read_pair(spec)
    scale_known = bool(pixel_size_um and size)
    if scale_known and abs(size / pixel_size_um - 1.0) > 1e-3:
        source, target = rescale_yx(source, size / pixel_size_um), rescale_yx(target, size / pixel_size_um)
    source, target, z_as_channels = arrange_pair(source, target, dims=dims, spec=spec)
    return LoadedPair(
        spec=spec,
        input=np.ascontiguousarray(normalize_input(source, input_normalization)),
        target=np.ascontiguousarray(normalize_target(target)),
        z_as_channels=z_as_channels,
        scale_known=scale_known,
    )


def check_consistent(pairs: Sequence[LoadedPair]) -> tuple[int, bool]:
    """All pairs must feed the network the same number of channels; returns (channels, z_as_channels)."""
    first = pairs[0]
    for other in pairs[1:]:
        if other.input.shape[0] != first.input.shape[0]:
            raise TrainingDataError(
                f"The input {other.spec.describe_input()} gives {other.input.shape[0]} channel(s)/planes but "
                f"{first.spec.describe_input()} gives {first.input.shape[0]}; all inputs must match.",
                path=other.spec.target)
    return first.input.shape[0], first.z_as_channels


def describe_pairs(pairs: Sequence[PairSpec], *, with_sha256: bool = False) -> list[dict[str, Any]]:
    """JSON-ready list of the pairs (paths, channels and optionally file hashes) for the manifest."""
    described = []
    for spec in pairs:
        entry = spec.to_dict()
        if spec.is_plane_series:
            entry["planes"] = [str(p) for p in plane_paths(spec)]
        if with_sha256:
            files = entry.get("planes") or [spec.input]
            entry["sha256"] = {str(f): sha256_of_file(Path(f)) for f in [*files, spec.target]}
        described.append(entry)
    return described


# --- helpers ---------------------------------------------------------------------------------
def _read(reader: Any, arg: Any, label: str) -> Any:
    try:
        return reader(arg)
    except TrainingDataError:
        raise
    except LabelFreeError as exc:
        # The reader's sentence already names the file.
        raise TrainingDataError(str(exc), path=exc.path or label) from exc


def _check_no_time(image: Any, label: str) -> None:
    if getattr(image, "has_time", False):
        raise TrainingDataError(
            f"{label} is a time series ({image.n_timepoints} time points); give one time point per file.",
            path=getattr(image, "path", None))


def _pick_column(columns: Sequence[str], names: Sequence[str]) -> str | None:
    return next((name for name in names if name in columns), None)


def _resolve(base: Path, text: str) -> str:
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else base / path)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", *IMAGE_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _images_by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise TrainingDataError(f"The folder {folder} does not exist; check the path.", path=folder)
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES):
            stem = _stem(path)
            if stem in found:
                raise TrainingDataError(
                    f"Two files in {folder} share the name {stem} ({found[stem].name}, {path.name}); "
                    "keep one.", path=path)
            found[stem] = path
    if not found:
        raise TrainingDataError(f"The folder {folder} holds no TIFF or PNG images.", path=folder)
    return found


def _yx(array: np.ndarray) -> str:
    return f"{array.shape[-2]}×{array.shape[-1]} px"
