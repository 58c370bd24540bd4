"""How long a diffusion prediction will take: one measured step time per model and device (cached
in the user cache folder), scaled by the image's pixels, the samples and the steps."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

PROBE_SIDE = 128  # px: the crop timed once per model and device
CACHE_NAME = "diffusion_step_times.json"


def cache_file() -> Path:
    from labelfree_app.paths import user_cache_dir

    return user_cache_dir() / CACHE_NAME


def cache_key(model_id: str, version: str, device: str) -> str:
    return f"{model_id}@{version}|{device}"


def cached_step_seconds(key: str, path: Path | None = None) -> float | None:
    """Seconds per step per sample per megapixel measured before for ``key``, or None."""
    try:
        value = json.loads((path or cache_file()).read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def store_step_seconds(key: str, seconds: float, path: Path | None = None) -> None:
    file = path or cache_file()
    try:
        table = json.loads(file.read_text(encoding="utf-8"))
        table = table if isinstance(table, dict) else {}
    except (OSError, ValueError):
        table = {}
    table[key] = float(seconds)
    file.parent.mkdir(parents=True, exist_ok=True)
    temp = file.with_suffix(".tmp")
    temp.write_text(json.dumps(table, indent=1), encoding="utf-8")
    temp.replace(file)


def measure_step_seconds(predict: Callable[[Any, int], Any], channels: int) -> float:
    """Time ``predict(image, steps)`` (one sample) on a ``PROBE_SIDE``² crop at 1 and 3 steps; the
    difference over 2 steps cancels loading and the fixed costs. Seconds per step per megapixel."""
    from labelfree_app.io.image import Image

    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (channels, 1, PROBE_SIDE, PROBE_SIDE)).astype(np.float32)
    image = Image(data=data, axes="CZYX", channel_names=tuple(f"c{k}" for k in range(channels)))
    predict(image, 1)  # warm-up: weights, an ONNX export, allocations
    timings = []
    for steps in (1, 3):
        start = time.perf_counter()
        predict(image, steps)
        timings.append(time.perf_counter() - start)
    per_step = max((timings[1] - timings[0]) / 2, timings[1] / 3 * 0.5, 1e-4)
    return per_step / (PROBE_SIDE * PROBE_SIDE / 1e6)


def estimate_seconds(step_seconds_per_mpx: float, pixels: int, samples: int, steps: int) -> float:
    return step_seconds_per_mpx * pixels / 1e6 * samples * steps


def describe_duration(seconds: float) -> str:
    if seconds < 60:
        return f"~{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"~{round(seconds / 60)} min"
    return f"~{seconds / 3600:.1f} h"


def estimate_text(samples: int, steps: int, seconds: float | None, device_word: str) -> str:
    """"8 × 25, ~3 min on this CPU" (or without the time while none is measured)."""
    head = f"{samples} × {steps}"
    return head if seconds is None else f"{head}, {describe_duration(seconds)} on this {device_word}"
