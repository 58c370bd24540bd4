"""The scale an image is predicted at: the model's own pixel size where both pixel sizes are known, else
the scale at which the model is most sure of itself (test-time scale search), else as it is.

A network learns nuclei of a size in pixels. An image whose file states its pixel size is resampled to
the pixel size the model was trained at (``training.settings.pixel_size_um`` of its manifest); the
user may type the pixel size a file lacks. Where neither is known, ``search`` predicts a central crop at
each of ``SEARCH_FACTORS`` and keeps the factor whose prediction has the highest ``calibrated_r`` (the
trust feature that carries over between microscopes: a calibrated network's r is the spread of its
z-scored prediction minus its mean). The prediction is resampled back to the input's own grid, so
outputs keep the input's shape and pixel size whatever the factor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

MODES = ("pixel-size", "search", "off")
SEARCH_FACTORS = (0.5, 0.71, 1.0, 1.41, 2.0)
SEARCH_CROP = 384  # side (input pixels) of the central crop the search predicts at every factor
SAME = 0.05  # factors within 5 % of 1 are not resampled
LIMITS = (0.25, 4.0)  # a pixel-size ratio outside these is refused: it names a different kind of image


@dataclass(frozen=True)
class ScaleChoice:
    """Input pixels are resampled by ``factor`` (> 1 enlarges) before the network; ``how`` says why."""

    factor: float = 1.0
    how: str = "none"  # "pixel size", "search", "none"
    note: str = ""  # one sentence for the result's notes ("" when nothing was done)
    scores: Mapping[float, float] | None = None  # the search's calibrated_r per factor

    @property
    def resamples(self) -> bool:
        return abs(self.factor - 1.0) > SAME

    def to_dict(self, mode: str) -> dict[str, Any]:
        """For the provenance: the mode asked for, the factor used and why (and the search's scores)."""
        out: dict[str, Any] = {"mode": mode, "factor": round(self.factor, 4), "how": self.how}
        if self.scores:
            out["search"] = {f"{k:g}": round(v, 4) for k, v in self.scores.items()}
        return out


def model_pixel_size(manifest: Mapping[str, Any]) -> float | None:
    """The pixel size (µm) the model was trained at, where its training recorded one."""
    value = ((manifest.get("training") or {}).get("settings") or {}).get("pixel_size_um")
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def input_pixel_size(image: Any, typed: float | None) -> float | None:
    """The input's pixel size (µm): the one the user typed, else the one its file states (X)."""
    if typed:
        return float(typed)
    value = (getattr(image, "pixel_size_um", None) or {}).get("X")
    return float(value) if value else None


def by_pixel_size(image: Any, manifest: Mapping[str, Any], typed: float | None) -> ScaleChoice | None:
    """Resample to the model's pixel size where both are known; None where either is not."""
    from labelfree_app.errors import SettingsError

    mine, model = input_pixel_size(image, typed), model_pixel_size(manifest)
    if mine is None or model is None:
        return None
    factor = mine / model
    if not LIMITS[0] <= factor <= LIMITS[1]:
        raise SettingsError(f"The image's pixel size ({mine:g} µm) is {factor:.2g} times the model's ({model:g} µm), "
                            "too far to resample; check the pixel size, or predict with --scale off.")
    note = (f"Resampled by {factor:.2f} to the model's pixel size ({mine:g} → {model:g} µm) and back."
            if abs(factor - 1.0) > SAME else "")
    return ScaleChoice(factor, "pixel size", note)


def search(plane: np.ndarray, predict: Callable[[np.ndarray], np.ndarray]) -> ScaleChoice:
    """The factor at which ``predict`` (raw input plane -> z-scored prediction) looks most like a
    calibrated network, judged on the central ``SEARCH_CROP``² of ``plane``."""
    from labelfree_app.core.trust import output_features

    crop = central_crop(plane, SEARCH_CROP)
    scores = {}
    for factor in SEARCH_FACTORS:
        scaled = resample(crop, factor)
        if min(scaled.shape) < 32:
            continue
        scores[factor] = output_features(predict(scaled))["calibrated_r"]
    best = max(scores, key=lambda f: (round(scores[f], 3), -abs(np.log(f))))  # ties: the factor nearest 1
    note = (f"Predicted at {best:.2f}× (scale search: expected agreement highest there, {scores[best]:.2f} against "
            f"{scores.get(1.0, float('nan')):.2f} at 1×)." if abs(best - 1.0) > SAME else "")
    return ScaleChoice(best, "search", note, scores)


def central_crop(plane: np.ndarray, side: int) -> np.ndarray:
    y, x = plane.shape[-2:]
    top, left = max(0, (y - side) // 2), max(0, (x - side) // 2)
    return plane[..., top:top + side, left:left + side]


def resample(array: np.ndarray, factor: float) -> np.ndarray:
    """``array`` (…, Y, X) resampled by ``factor`` (linear; smoothed first when shrinking)."""
    if abs(factor - 1.0) <= SAME:
        return array
    y, x = array.shape[-2:]
    return resize_to(array, (max(1, round(y * factor)), max(1, round(x * factor))))


def resize_to(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``array`` (…, Y, X) resized to ``shape`` (Y, X); float32, the lead axes kept."""
    from skimage.transform import resize

    if tuple(array.shape[-2:]) == tuple(shape):
        return array
    shrinking = shape[0] < array.shape[-2]
    out = resize(np.asarray(array, dtype=np.float32), (*array.shape[:-2], *shape), order=1, mode="reflect",
                 anti_aliasing=shrinking, preserve_range=True)
    return out.astype(np.float32, copy=False)


def choose(mode: str, image: Any, manifest: Mapping[str, Any], typed: float | None,
           plane: Callable[[], np.ndarray], predict_z: Callable[[np.ndarray], np.ndarray]) -> ScaleChoice:
    """The run's scale for ``mode`` ("pixel-size", "search" or "off"): the model's pixel size where both
    are known; with "search", else the searched factor of a 2D U-Net (``plane()`` gives the raw pixels
    the search looks at, ``predict_z`` predicts a resampled crop of them in z-scores)."""
    from labelfree_app.core.settings import is_diffusion

    if mode == "off" or int(manifest.get("dims", 2)) != 2:
        return ScaleChoice()
    known = by_pixel_size(image, manifest, typed)
    if known is not None:
        return known
    single = int((manifest.get("input") or {}).get("channels", 1)) == 1 and not (manifest.get("input") or {}).get(
        "z_as_channels")
    if mode != "search" or is_diffusion(manifest) or not single:
        return ScaleChoice()
    planes = plane()
    planes = planes.reshape((-1,) + planes.shape[-2:])  # the middle plane of a stack (of its first channel)
    return search(planes[len(planes) // 2], predict_z)


class Rescaler:
    """One run's scale: each time point's pixels resampled by the choice, each result back to their grid."""

    def __init__(self, choice: ScaleChoice) -> None:
        self.choice = choice
        self.shape: tuple[int, int] | None = None

    def pixels(self, pixels: np.ndarray) -> np.ndarray:
        self.shape = (int(pixels.shape[-2]), int(pixels.shape[-1]))
        return resample(pixels, self.choice.factor) if self.choice.resamples else pixels

    def back(self, array: np.ndarray | None) -> np.ndarray | None:
        """An output (…, Y', X') on the input's own grid (NaN where missing stays NaN-ish: mask after)."""
        if array is None or not self.choice.resamples or self.shape is None:
            return array
        return resize_to(array, self.shape)

    def back_mask(self, mask: np.ndarray | None) -> np.ndarray | None:
        if mask is None or not self.choice.resamples or self.shape is None:
            return mask
        return resize_to(mask.astype(np.float32), self.shape) > 0.5


RESAMPLED_STREAM_MIN_PIXELS = 4096 * 4096  # resampling needs whole planes: only larger inputs stream (unscaled)


def may_resample(settings: Any, image: Any, manifest: Mapping[str, Any]) -> bool:
    """Whether a run with ``settings`` may resample ``image`` (without predicting anything)."""
    if settings.scale == "off" or int(manifest.get("dims", 2)) != 2:
        return False
    mine, model = input_pixel_size(image, settings.pixel_size_um), model_pixel_size(manifest)
    if mine is not None and model is not None:
        return abs(mine / model - 1.0) > SAME
    return settings.scale == "search"


def streamed_scale_note(settings: Any, image: Any, manifest: Mapping[str, Any]) -> list[str]:
    """The sentence a streamed (huge) result carries when its scale setting could not be applied."""
    if not may_resample(settings, image, manifest):
        return []
    return ["Not resampled to the model's scale: an image this large is predicted in bands at its own scale; "
            "crop it, or resample it first."]
