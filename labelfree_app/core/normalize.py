"""Intensity normalization fitted on a whole image, applied and undone exactly.

Three methods: ``zscore`` (fnet), ``percentile`` (CSBDeep, 1 / 99.8 by default) and ``minmax``.
Statistics come from the WHOLE image, never per tile (per-tile statistics make seams).
A ``Normalizer`` round-trips through JSON as ``{"method": ..., "params": {...}}`` so a model
manifest can record either just the method and its options (fitted per image at predict time)
or a fitted normalizer (e.g. to bring outputs back to the training target's units).

``params`` keys by method:
  zscore      fitted: ``mean``, ``std``
  percentile  options: ``low``, ``high`` (the percentiles); fitted: ``low_value``, ``high_value``
  minmax      fitted: ``low_value``, ``high_value`` (the minimum and maximum)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np

from labelfree_app.errors import EmptyImageError, ManifestError

METHODS = ("zscore", "percentile", "minmax")
DEFAULT_LOW_PERCENTILE = 1.0
DEFAULT_HIGH_PERCENTILE = 99.8
DEFAULT_SAMPLE_LIMIT = 4_000_000  # pixels used for percentiles of big images (strided sample)
_CHUNK_ELEMENTS = 1 << 20  # float64 work buffers for mean / std stay at ~8 MB

_FITTED_KEYS = {"zscore": ("mean", "std"), "percentile": ("low_value", "high_value"),
                "minmax": ("low_value", "high_value")}
_OPTION_KEYS = {"zscore": (), "percentile": ("low", "high"), "minmax": ()}


@dataclass(frozen=True)
class Normalizer:
    """An affine intensity normalization ``y = (x - offset) / scale``; unfitted until fitted."""

    method: str
    params: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown normalization method {self.method!r}; use one of {', '.join(METHODS)}")
        allowed = set(_FITTED_KEYS[self.method]) | set(_OPTION_KEYS[self.method])
        unknown = sorted(set(self.params) - allowed)
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} for normalization {self.method!r}")
        object.__setattr__(self, "params", {k: float(v) for k, v in self.params.items()})
        if self.method == "percentile":
            low, high = self.percentiles
            if not 0.0 <= low < high <= 100.0:
                raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {low} and {high}")

    def __hash__(self) -> int:
        return hash((self.method, tuple(sorted(self.params.items()))))

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def unfitted(cls, method: str = "zscore", **options: float) -> Normalizer:
        """A normalizer that records the method and its options (``low``/``high`` percentiles)."""
        return cls(method, dict(options))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, field_name: str = "normalization") -> Normalizer:
        """Read ``{"method": ..., "params": {...}}``; a bad value raises ``ManifestError`` naming it."""
        if not isinstance(data, Mapping):
            raise ManifestError(f"The model's '{field_name}' must be an object with 'method' and 'params'.",
                                field=field_name)
        method = data.get("method")
        if method not in METHODS:
            raise ManifestError(
                f"The model's '{field_name}.method' is {method!r}; it must be one of {', '.join(METHODS)}.",
                field=f"{field_name}.method",
            )
        params = data.get("params") or {}
        if not isinstance(params, Mapping):
            raise ManifestError(f"The model's '{field_name}.params' must be an object of numbers.",
                                field=f"{field_name}.params")
        for key, value in params.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ManifestError(
                    f"The model's '{field_name}.params.{key}' must be a finite number, not {value!r}.",
                    field=f"{field_name}.params.{key}",
                )
        try:
            return cls(str(method), dict(params))
        except ValueError as exc:
            raise ManifestError(f"The model's '{field_name}.params' are invalid: {exc}.",
                                field=f"{field_name}.params") from exc

    def to_dict(self) -> dict[str, Any]:
        """``{"method": ..., "params": {...}}`` with plain floats (JSON-ready)."""
        return {"method": self.method, "params": dict(self.params)}

    # -- fitting --------------------------------------------------------------------------
    @property
    def percentiles(self) -> tuple[float, float]:
        """The (low, high) percentiles a percentile normalizer uses."""
        return (self.params.get("low", DEFAULT_LOW_PERCENTILE), self.params.get("high", DEFAULT_HIGH_PERCENTILE))

    @property
    def is_fitted(self) -> bool:
        return all(key in self.params for key in _FITTED_KEYS[self.method])

    def fit(self, array: Any, *, sample_limit: int = DEFAULT_SAMPLE_LIMIT) -> Normalizer:
        """A fitted copy with statistics of the whole ``array`` (options kept)."""
        low, high = self.percentiles
        return fit_normalizer(array, self.method, low=low, high=high, sample_limit=sample_limit)

    # -- applying -------------------------------------------------------------------------
    def apply(self, x: Any) -> np.ndarray:
        """Normalized float32 copy of ``x``."""
        offset, scale = self._offset_scale()
        y = np.subtract(np.asarray(x), np.float32(offset), dtype=np.float32)
        y /= np.float32(scale)
        return y

    def invert(self, y: Any) -> np.ndarray:
        """Undo ``apply``: float32 values in the original intensity units."""
        offset, scale = self._offset_scale()
        x = np.multiply(np.asarray(y), np.float32(scale), dtype=np.float32)
        x += np.float32(offset)
        return x

    def _offset_scale(self) -> tuple[float, float]:
        if not self.is_fitted:
            raise ValueError(f"this {self.method} normalizer is not fitted; call fit(image) first")
        if self.method == "zscore":
            offset, spread = self.params["mean"], self.params["std"]
        else:
            offset = self.params["low_value"]
            spread = self.params["high_value"] - offset
        return offset, _safe_scale(spread, offset)


def fit_normalizer(
    array: Any,
    method: str = "zscore",
    *,
    low: float = DEFAULT_LOW_PERCENTILE,
    high: float = DEFAULT_HIGH_PERCENTILE,
    sample_limit: int = DEFAULT_SAMPLE_LIMIT,
) -> Normalizer:
    """Fit ``method`` on the whole ``array`` (non-finite pixels ignored).

    z-score statistics are exact (float64, chunked); percentiles of arrays larger than
    ``sample_limit`` come from a deterministic strided sample, so fitting stays fast and small.
    """
    if method not in METHODS:
        raise ValueError(f"unknown normalization method {method!r}; use one of {', '.join(METHODS)}")
    data = np.asarray(array)
    if data.size == 0:
        raise EmptyImageError("The image has no pixels, so it cannot be normalized; check the file.")
    if method == "zscore":
        mean, std = _finite_mean_std(data)
        return Normalizer("zscore", {"mean": mean, "std": std})
    if method == "minmax":
        lo, hi = _finite_min_max(data)
        return Normalizer("minmax", {"low_value": lo, "high_value": hi})
    options = Normalizer("percentile", {"low": low, "high": high})  # validates the percentiles
    sample = strided_sample(data, sample_limit).astype(np.float64)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        raise _no_finite_values()
    lo, hi = np.percentile(sample, [low, high])
    return Normalizer("percentile", {**options.params, "low_value": float(lo), "high_value": float(hi)})


def strided_sample(array: np.ndarray, limit: int) -> np.ndarray:
    """A deterministic 1-D sample of at most ~``limit`` pixels taken at a regular stride."""
    if limit < 1:
        raise ValueError("sample limit must be at least 1")
    if array.size <= limit:
        return array.reshape(-1)
    if array.flags.c_contiguous:
        step = -(-array.size // limit)
        return array.reshape(-1)[::step]
    steps = [1] * array.ndim
    while math.prod(-(-n // s) for n, s in zip(array.shape, steps)) > limit:
        longest = max(range(array.ndim), key=lambda d: -(-array.shape[d] // steps[d]))
        steps[longest] *= 2
    return array[tuple(slice(None, None, s) for s in steps)].reshape(-1)


def _safe_scale(spread: float, offset: float) -> float:
    """``spread``, or 1.0 when the image is (numerically) constant, so nothing divides by zero."""
    tiny = max(float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).eps) * abs(offset))
    if not math.isfinite(spread) or spread <= tiny:
        return 1.0
    return spread


def _chunks(array: np.ndarray, max_elements: int = _CHUNK_ELEMENTS) -> Iterator[np.ndarray]:
    """Views of ``array`` of at most ``max_elements`` each (bounded float64 copies downstream)."""
    if array.size <= max_elements or array.ndim == 0:
        yield array
        return
    if array.ndim == 1:
        for start in range(0, array.shape[0], max_elements):
            yield array[start:start + max_elements]
        return
    row = array[0].size
    rows = max(1, max_elements // max(row, 1))
    for start in range(0, array.shape[0], rows):
        block = array[start:start + rows]
        if rows == 1:
            yield from _chunks(block[0], max_elements)
        else:
            yield block


def _finite_values(chunk: np.ndarray) -> np.ndarray:
    values = np.asarray(chunk, dtype=np.float64).reshape(-1)
    if np.issubdtype(chunk.dtype, np.floating):
        values = values[np.isfinite(values)]
    return values


def _finite_mean_std(data: np.ndarray) -> tuple[float, float]:
    count, total = 0, 0.0
    for chunk in _chunks(data):
        values = _finite_values(chunk)
        count += values.size
        total += float(values.sum())
    if count == 0:
        raise _no_finite_values()
    mean = total / count
    squares = 0.0
    for chunk in _chunks(data):
        values = _finite_values(chunk) - mean
        squares += float(np.dot(values, values))
    return mean, math.sqrt(squares / count)


def _finite_min_max(data: np.ndarray) -> tuple[float, float]:
    lo, hi = math.inf, -math.inf
    for chunk in _chunks(data):
        values = _finite_values(chunk)
        if values.size:
            lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
    if lo > hi:
        raise _no_finite_values()
    return lo, hi


def _no_finite_values() -> EmptyImageError:
    return EmptyImageError("The image holds no finite pixel value, so it cannot be normalized; check the file.")
