"""What the training inputs looked like, recorded in the model so that a prediction can draw a trust map.

``InputSample`` keeps up to ``MAX_PLANES`` of the normalized training inputs (spread over the pairs)
while they are loaded, each reduced to what ``core.trust.patch_statistics`` reads (channels
averaged; a large plane sampled as a mosaic of blocks spread over it), and ``trust_block`` fits the
``InputProfile`` that goes into the manifest's ``trust`` field. 2D models only: the engine draws
no trust map for 3D ones. A fraction of a second for 40 planes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labelfree_app.core.trust import METHOD, PATCH, InputProfile

MAX_PLANES = 40
MAX_SIDE = 512  # a plane larger than this a side is sampled as a mosaic...
BLOCK = 4 * PATCH  # ...of blocks this large, spread evenly over it (whole patches, few seams)


def mosaic(plane: np.ndarray, side: int = MAX_SIDE, block: int = BLOCK) -> np.ndarray:
    """``plane`` (Y, X) itself when it fits ``side``, else blocks spread evenly over it, side by side."""
    h, w = plane.shape
    if h <= side and w <= side:
        return plane
    ny, nx = min(side // block, h // block), min(side // block, w // block)
    if ny == 0 or nx == 0:  # a thin strip: its first part
        return plane[:side, :side]
    ys = np.linspace(0, h - block, ny).astype(int)
    xs = np.linspace(0, w - block, nx).astype(int)
    return np.block([[plane[y:y + block, x:x + block] for x in xs] for y in ys])


class InputSample:
    """Collects the normalized inputs of up to ``limit`` pairs, spread evenly over ``n_pairs``."""

    def __init__(self, n_pairs: int, dims: int, limit: int = MAX_PLANES) -> None:
        wanted = np.linspace(0, n_pairs - 1, min(limit, n_pairs)).round().astype(int) if n_pairs else []
        self.chosen = set(int(i) for i in wanted) if dims == 2 else set()
        self.planes: list[np.ndarray] = []

    def add(self, index: int, normalized_input: np.ndarray) -> None:
        """Keep pair ``index``'s normalized input (C, Y, X) if it is one of the chosen."""
        if index in self.chosen:
            plane = np.nan_to_num(np.asarray(normalized_input, dtype=np.float32)).mean(axis=0)
            self.planes.append(np.ascontiguousarray(mosaic(plane)))

    def trust_block(self) -> dict[str, Any] | None:
        """The manifest's ``trust`` field ({"input_profile", "method"}), or None (3D, no data, or a
        degenerate sample that gives no usable profile). Frees the kept planes."""
        planes, self.planes = self.planes, []
        if not planes:
            return None
        try:
            profile = InputProfile.fit(planes)
            InputProfile.from_dict(profile.to_dict())  # refuses a profile with non-finite numbers
        except (ValueError, np.linalg.LinAlgError):
            return None
        return {"input_profile": profile.to_dict(), "method": METHOD}
