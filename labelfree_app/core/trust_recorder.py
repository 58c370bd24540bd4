"""Collect trust features while the engine predicts, and turn them into an estimate and a map.

The engine hands each finished plane (z-score units, before conversion to the stain's) and the
normalized input it came from to ``TrustRecorder.add`` (a streamed plane's ``PlaneWatcher`` to
``add_watched``); ``estimate`` gives the ``TrustEstimate`` of the whole image and ``trust_map`` the
familiarity map in the prediction's axes with one channel.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from labelfree_app.core.trust import (InputProfile, TrustEstimate, TrustModel, load_calibration, mean_features,
                                      prediction_features, upsample_map)

CALIBRATION_FILE = "trust_calibration.json"
# A streamed image gets a trust map while the map (all its planes) has at most this many pixels:
# the full-resolution float32 map is made in memory, so it stays under 256 MB.
STREAMED_MAP_MAX_PIXELS = 64 * 1024 * 1024


@functools.lru_cache(maxsize=4)
def bundled_calibration(path: str | None = None) -> dict[str, TrustModel]:
    """The calibrated trust models shipped in resources/ (empty when the file is missing)."""
    from labelfree_app.paths import resources_dir

    file = Path(path) if path else resources_dir() / CALIBRATION_FILE
    if not file.is_file():
        return {}
    try:
        return load_calibration(file)
    except (ValueError, KeyError, TypeError):
        return {}


def calibration_key(kind: str, has_profile: bool) -> str:
    """'unet' or 'diffusion', with '+profile' when the model knows its training inputs. A U-Net run
    with TTA uses the U-Net's (its features come from the TTA mean, a little smoother)."""
    return ("diffusion" if is_diffusion_kind(kind) else "unet") + ("+profile" if has_profile else "")


def is_diffusion_kind(kind: str) -> bool:
    return kind.startswith("diffusion")


class TrustRecorder:
    """Features of each predicted plane; the estimate once all planes of the image are in."""

    def __init__(self, manifest: Mapping[str, Any], calibration: Mapping[str, TrustModel] | None = None) -> None:
        self.kind = str(manifest.get("kind", "unet"))
        self.enabled = int(manifest.get("dims", 2)) == 2
        self.profile: InputProfile | None = None
        profile = (manifest.get("trust") or {}).get("input_profile")
        if profile:
            try:
                self.profile = InputProfile.from_dict(profile)
            except (ValueError, KeyError, TypeError):
                self.profile = None
        self.calibration = bundled_calibration() if calibration is None else calibration
        self._features: list[dict[str, float]] = []
        self._maps: list[tuple[np.ndarray, tuple[int, int]]] = []  # (patch familiarity, plane's Y X)

    def add(self, prediction_z: np.ndarray, x: np.ndarray, variance_z: np.ndarray | None = None) -> None:
        """One plane: prediction and variance (C, Y, X) in z-scores, the normalized input (C_in, Y, X)."""
        if not self.enabled:
            return
        feats, familiar = prediction_features(prediction_z[0], x, self.profile,
                                              None if variance_z is None else variance_z[0])
        self.add_features(feats, familiar, tuple(prediction_z.shape[-2:]))

    def add_features(self, feats: dict[str, float], familiar: np.ndarray | None, shape: tuple[int, int] | None) -> None:
        """One plane's features and patch familiarity with the plane's (Y, X) ``shape`` (None: no map)."""
        self._features.append(feats)
        if familiar is not None and shape is not None:
            self._maps.append((np.asarray(familiar, dtype=np.float32), (int(shape[0]), int(shape[1]))))

    def watch_plane(self, height: int, width: int) -> Any:
        """A ``trust_stream.PlaneWatcher`` for one streamed plane of a 2D U-Net (None otherwise)."""
        if not self.enabled or is_diffusion_kind(self.kind):
            return None
        from labelfree_app.core.trust_stream import PlaneWatcher

        return PlaneWatcher(height, width, self.profile)

    def add_watched(self, watcher: Any) -> None:
        """A streamed plane (``PlaneWatcher``): its features, and its familiarity while the trust map
        of the planes so far stays within ``STREAMED_MAP_MAX_PIXELS`` (beyond: no map for the image)."""
        feats, familiar = watcher.features()
        plane = (int(watcher.height), int(watcher.width))
        pixels = sum(h * w for _, (h, w) in self._maps) + plane[0] * plane[1]
        self.add_features(feats, familiar, plane if pixels <= STREAMED_MAP_MAX_PIXELS else None)

    @property
    def features(self) -> dict[str, float]:
        return mean_features(self._features)

    def estimate(self) -> TrustEstimate | None:
        """The calibrated estimate, or None (a 3D model, or no calibration for this kind of model)."""
        if not self._features:
            return None
        key = calibration_key(self.kind, self.profile is not None)
        model = self.calibration.get(key) or self.calibration.get(calibration_key(self.kind, False))
        if model is None:
            return None
        feats = self.features
        if any(name not in feats for name in model.features):
            return None
        return model.estimate(feats)

    def trust_map(self, prediction_shape: tuple[int, ...]) -> np.ndarray | None:
        """Familiarity (0-1) per pixel, shaped like the prediction with one channel, or None."""
        if not self._maps or len(self._maps) != len(self._features):
            return None
        shape = list(prediction_shape)
        shape[-4] = 1
        out = np.empty(shape, np.float32)
        planes = out.reshape((-1,) + tuple(shape[-2:]))  # one per plane, in the engine's order (time, then z)
        if len(planes) != len(self._maps):
            raise ValueError(f"a trust map of {len(self._maps)} plane(s) does not fit a prediction of {len(planes)}")
        for plane, (familiar, _) in zip(planes, self._maps):
            plane[...] = upsample_map(familiar, plane.shape)
        return out
