"""Events the prediction engine yields: progress, previews, and the final result.

The engine is a generator of these; the CLI turns them into a tqdm bar, the GUI worker into
Qt signals. Arrays in events are owned by the receiver (the engine never mutates them later).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np


@dataclass(frozen=True)
class Progress:
    """Work done so far in a stage (e.g. "tiles", "sampling")."""

    stage: str
    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


@dataclass(frozen=True)
class Preview:
    """An intermediate image for the denoising animation.

    ``image`` is (C, Z, Y, X) float32 in output intensity units: the current noisy sample x_t
    (``kind == "x_t"``) or the network's estimate of the clean image (``kind == "pred_x0"``).
    """

    kind: str
    sample: int
    step: int
    total_steps: int
    image: np.ndarray


@dataclass(frozen=True)
class PredictionResult:
    """The final prediction for one image and one model.

    ``prediction`` is the U-Net output or the diffusion mean, ``variance`` the per-pixel variance
    over diffusion samples (or test-time augmentations), ``frames`` an optional subsampled stack of
    denoising steps (F, C, Z, Y, X). All arrays are float32 with axes ``axes``: "CZYX", or "TCZYX" for
    every time point of a time series.
    """

    prediction: np.ndarray
    axes: str = "CZYX"
    variance: np.ndarray | None = None
    frames: np.ndarray | None = None
    channel_names: tuple[str, ...] = ()
    model_id: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    device: str = "cpu"
    backend: str = "torch"  # what ran the network: "torch" or "onnxruntime"
    notes: tuple[str, ...] = ()  # sentences the user should see next to the result (e.g. NaN input)
    trust: Any = None  # core.trust.TrustEstimate: the expected r with a real stain (None: not estimated)
    trust_map: np.ndarray | None = None  # familiarity 0-1 per pixel, the prediction's axes with C = 1


Event = Union[Progress, Preview, PredictionResult]


def without_result(event: Any) -> Any:
    """For ``drive.relay`` of an engine run: pass its events on, keep its result (the run's return value)."""
    return None if isinstance(event, PredictionResult) else event
