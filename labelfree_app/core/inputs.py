"""Turn an image file's pixels into what a model takes (the right channel, planes and dims), and the
model's outputs per plane back into one image (NaN where the input was not finite)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from labelfree_app.errors import EmptyImageError, InputShapeError

if TYPE_CHECKING:
    from labelfree_app.core.settings import PredictSettings


@dataclass(frozen=True)
class ModelInputSpec:
    """What a model's first layer takes, read from its manifest."""

    dims: int
    channels: int
    z_as_channels: bool = False


@dataclass(frozen=True)
class PreparedInput:
    """Model-ready pixels: a list of (C, *spatial) arrays, one per independent prediction.

    A 2D model given a Z-stack (without z-as-channels) predicts each plane on its own, so
    ``parts`` holds one array per plane and ``planes`` says how many there are.
    """

    parts: tuple[np.ndarray, ...]
    planes: int
    per_plane: bool


def prepare_input(zyx_or_czyx: np.ndarray, spec: ModelInputSpec, *, name: str = "the image") -> PreparedInput:
    """Arrange pixels of one image for a model.

    ``zyx_or_czyx`` is (Z, Y, X) for one picked channel, or (C, Z, Y, X) when the model takes
    several channels. Returns float32 arrays shaped (C, Y, X) for 2D models or (C, Z, Y, X) for 3D.
    """
    data = np.asarray(zyx_or_czyx)
    if data.ndim == 3:
        data = data[np.newaxis]
    if data.ndim != 4:
        raise InputShapeError(f"{name} has {data.ndim} axes after channel selection; expected Z, Y, X.")
    c, z, _, _ = data.shape

    if spec.z_as_channels:
        if c != 1:
            raise InputShapeError(f"{name}: pick one channel for a model that takes a z-stack as channels.")
        if z != spec.channels:
            hint = " (a single plane was given)" if z == 1 else ""
            raise InputShapeError(
                f"{name} has {z} z-planes{hint} but the model takes a {spec.channels}-plane z-stack; "
                f"give it a stack with exactly {spec.channels} planes."
            )
        return PreparedInput(parts=(data[0].astype(np.float32, copy=False),), planes=1, per_plane=False)

    if c != spec.channels:
        raise InputShapeError(
            f"{name} gives {c} channel(s) but the model takes {spec.channels}; pick the right channel(s)."
        )
    if spec.dims == 3:
        if z < 2:
            raise InputShapeError(f"{name} is a single plane but this is a 3D model; give it a z-stack.")
        return PreparedInput(parts=(data.astype(np.float32, copy=False),), planes=z, per_plane=False)
    parts = tuple(data[:, k].astype(np.float32, copy=False) for k in range(z))
    return PreparedInput(parts=parts, planes=z, per_plane=z > 1)


def as_czyx(array: np.ndarray, dims: int) -> np.ndarray:
    """Give a model output (C, Y, X) or (C, Z, Y, X) the canonical (C, Z, Y, X) axes."""
    return array[:, np.newaxis] if dims == 2 else array


def time_points(image: Any, settings: PredictSettings) -> list[int]:
    """The time points to predict: all of a time series, or the one the settings name."""
    data = image.data
    count = int(data.shape[0]) if data.ndim == 5 else 1
    if settings.time_point is None:
        return list(range(count))
    if not 0 <= settings.time_point < count:
        raise InputShapeError(f"{image_name(image)} has {count} time point(s); time point {settings.time_point} "
                              f"does not exist (use 0 to {count - 1}).")
    return [settings.time_point]


def missing_mask(prepared: PreparedInput, dims: int) -> tuple[np.ndarray | None, int]:
    """Where any input channel is NaN/Inf, as the prediction's (Z, Y, X) grid, and how many values."""
    masks = [~np.isfinite(part) for part in prepared.parts]
    count = int(sum(int(m.sum()) for m in masks))
    if not count:
        return None, 0
    spatial = [m.any(axis=0) for m in masks]  # over channels: (Y, X) per 2D part, (Z, Y, X) in 3D
    return (spatial[0] if dims == 3 else np.stack(spatial)), count


def stack_planes(outputs: list[np.ndarray], dims: int, prepared: PreparedInput) -> np.ndarray:
    """(C, Y, X) per plane or one (C, Z, Y, X) -> one float32 (C, Z, Y, X) array."""
    if dims == 3:
        return np.ascontiguousarray(outputs[0], dtype=np.float32)
    return np.ascontiguousarray(np.stack(outputs, axis=1), dtype=np.float32)


def mark_missing(missing: np.ndarray | None, *arrays: np.ndarray | None) -> None:
    """NaN in each (C, …) output where the input was not finite."""
    if missing is not None:
        for array in arrays:
            if array is not None:
                array[:, missing] = np.nan


def input_notes(image: Any, times: list[int], non_finite: int) -> list[str]:
    """The sentences a result carries about its input: one time point of a series, non-finite pixels."""
    notes = []
    data = image.data
    if len(times) == 1 and data.ndim == 5 and data.shape[0] > 1:
        notes.append(f"Time point {times[0] + 1} of {data.shape[0]} was predicted; "
                     "`labelfree predict` and batch export predict every time point.")
    if non_finite:
        notes.append(f"{image_name(image)} has {non_finite} non-finite pixel value(s) (NaN or Inf): they were "
                     "left out of the normalization, filled for the network, and are NaN in the prediction.")
    return notes


def image_name(image: Any) -> str:
    path = getattr(image, "path", None)
    return f"'{path.name}'" if path is not None else "the image"


@contextmanager
def naming_frame(name: str | None, t: int, count: int) -> Iterator[None]:
    """Inside a time series, a time point with no finite pixel is refused naming that frame (1-based), so the user
    can mend or drop it: a job writes every time point or nothing, and a resume never skips a half-made series."""
    try:
        yield
    except EmptyImageError as exc:
        if count <= 1:
            raise
        raise EmptyImageError(f"Time point {t + 1} of {count}{' of ' + name if name else ''} holds no finite pixel "
                              "value (every pixel is NaN or infinite), so the series was not predicted; replace or "
                              "remove that frame and run it again.", path=exc.path) from exc
