"""The ``Image`` value: pixels in canonical axes order with channel names and pixel sizes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from labelfree_app.io.channels import default_channel_names, resolve_channel_index

CANONICAL_AXES = "CZYX"
CANONICAL_AXES_WITH_TIME = "TCZYX"
SPATIAL_AXES = ("Z", "Y", "X")


@dataclass(frozen=True, eq=False)
class Image:
    """Pixels with named axes: ``data`` is (C, Z, Y, X), or (T, C, Z, Y, X) when T > 1.

    Singleton C and Z are kept, so code can always index ``data[c, z]``.
    ``pixel_size_um`` holds only the sizes the file states (keys among "Z", "Y", "X").
    """

    data: np.ndarray
    axes: str
    channel_names: tuple[str, ...]
    pixel_size_um: dict[str, float] = field(default_factory=dict)
    path: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.axes not in (CANONICAL_AXES, CANONICAL_AXES_WITH_TIME):
            raise ValueError(f"axes must be {CANONICAL_AXES!r} or {CANONICAL_AXES_WITH_TIME!r}, not {self.axes!r}")
        if self.data.ndim != len(self.axes):
            raise ValueError(f"data has {self.data.ndim} dims but axes {self.axes!r} has {len(self.axes)}")
        if len(self.channel_names) != self.n_channels:
            raise ValueError(f"{len(self.channel_names)} channel names for {self.n_channels} channels")
        if any(not name for name in self.channel_names):
            raise ValueError("channel names must not be empty")
        unknown = set(self.pixel_size_um) - set(SPATIAL_AXES)
        if unknown:
            raise ValueError(f"pixel_size_um keys must be among Z, Y, X, not {sorted(unknown)}")

    @classmethod
    def from_array(
        cls,
        data: np.ndarray,
        axes: str,
        *,
        channel_names: Sequence[str] | None = None,
        pixel_size_um: dict[str, float] | None = None,
        path: Path | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Image:
        """Build an Image from an array with any subset of the axes "TCZYX" in any order."""
        canonical, canonical_axes = to_canonical(np.asarray(data), axes)
        n_channels = canonical.shape[canonical_axes.index("C")]
        names = tuple(channel_names) if channel_names is not None else default_channel_names(n_channels)
        return cls(
            data=canonical,
            axes=canonical_axes,
            channel_names=names,
            pixel_size_um=dict(pixel_size_um or {}),
            path=path,
            metadata=dict(metadata or {}),
        )

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def has_time(self) -> bool:
        return self.axes == CANONICAL_AXES_WITH_TIME

    @property
    def n_timepoints(self) -> int:
        return self.data.shape[0] if self.has_time else 1

    @property
    def n_channels(self) -> int:
        return self.data.shape[self.axes.index("C")]

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        z, y, x = self.data.shape[-3:]
        return (z, y, x)

    @property
    def is_3d(self) -> bool:
        return self.shape_zyx[0] > 1

    def channel_index(self, name_or_index: int | str) -> int:
        """Index of a channel given by name (case-insensitive) or index; ChannelError if absent."""
        return resolve_channel_index(self.channel_names, name_or_index, path=self.path)

    def channel(self, name_or_index: int | str) -> np.ndarray:
        """One channel as (Z, Y, X); (T, Z, Y, X) when the image has a T axis."""
        index = self.channel_index(name_or_index)
        return self.data[:, index] if self.has_time else self.data[index]


def to_canonical(data: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    """Reorder ``data`` with ``axes`` (a subset of "TCZYX") to (C, Z, Y, X) or (T, C, Z, Y, X)."""
    axes = axes.upper()
    if len(axes) != data.ndim:
        raise ValueError(f"axes {axes!r} do not match an array with {data.ndim} dims")
    if len(set(axes)) != len(axes) or not set(axes) <= set(CANONICAL_AXES_WITH_TIME):
        raise ValueError(f"axes must be distinct letters from 'TCZYX', not {axes!r}")
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"axes must include Y and X, not {axes!r}")
    present = [axis for axis in CANONICAL_AXES_WITH_TIME if axis in axes]
    ordered = data.transpose([axes.index(axis) for axis in present])  # a method: lazy arrays stay lazy
    for position, axis in enumerate(CANONICAL_AXES_WITH_TIME):
        if axis not in present:
            ordered = ordered[(slice(None),) * position + (None,)]
    if ordered.shape[0] == 1:
        return ordered[0], CANONICAL_AXES
    return ordered, CANONICAL_AXES_WITH_TIME
