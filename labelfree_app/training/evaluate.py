"""Evaluate a model package on paired images: Pearson r, NRMSE, SSIM, and calibration.

Each input is predicted whole by the prediction engine (exactly as ``labelfree predict`` does)
and the metrics are computed on an optional region (e.g. the held-out test quadrant). A model
whose manifest has no output normalization predicts in z-score units of its training targets,
so its predictions are compared with the z-scored target; NRMSE and SSIM are in those units. A
model that knows its stain's units is compared in them, unless asked for ``units="zscore"``: then
prediction and target are both z-scored, which is the fair way to score the calibration of a model
on a stain whose intensities it never saw (another lab's camera, dye or bit depth).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from labelfree_app.training.calibration import uncertainty_calibration
from labelfree_app.training.config import PairSpec
from labelfree_app.training.datasets import (check_pairs_exist, normalize_target, read_input_image,
                                             read_target_zyx)
from labelfree_app.training.sampling import Region

METRIC_COLUMNS = ("pearson_r", "nrmse", "ssim", "median_abs_error", "within_1sigma", "within_2sigma",
                  "std_error_spearman")


@dataclass(frozen=True)
class EvaluationRow:
    """Metrics of one pair. Calibration figures are None without a variance map."""

    name: str
    pearson_r: float
    nrmse: float
    ssim: float
    median_abs_error: float | None = None  # in the report's units (the stain's, for a model that knows them)
    within_1sigma: float | None = None
    within_2sigma: float | None = None
    std_error_spearman: float | None = None
    pixels: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class EvaluationReport:
    """Per-pair metrics and their means; ``to_table()`` for people, ``to_json()`` for tools."""

    model_id: str
    kind: str
    region: str | None
    rows: tuple[EvaluationRow, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    units: str = ""

    def mean(self, metric: str) -> float | None:
        values = [getattr(r, metric) for r in self.rows if getattr(r, metric) is not None]
        values = [v for v in values if math.isfinite(v)]
        return float(np.mean(values)) if values else None

    @property
    def pearson_r(self) -> float | None:
        return self.mean("pearson_r")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "kind": self.kind,
            "region": self.region,
            "units": self.units,
            "settings": self.settings,
            "mean": {m: self.mean(m) for m in METRIC_COLUMNS if self.mean(m) is not None},
            "pairs": [asdict(r) for r in self.rows],
            "calibration_definition": (
                "within_1sigma / within_2sigma: fraction of pixels with |target - mean| <= 1 / 2 predicted std "
                "(about 0.68 / 0.95 when calibrated); std_error_spearman: Spearman correlation over 32x32 "
                "patches between mean predicted std and RMS error."),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(_finite_or_none(self.to_dict()), indent=indent)

    def to_table(self) -> str:
        columns = [m for m in METRIC_COLUMNS if any(getattr(r, m) is not None for r in self.rows)]
        header = ["pair", *columns]
        lines = [[r.name, *(_fmt(getattr(r, m)) for m in columns)] for r in self.rows]
        if len(self.rows) > 1:
            lines.append(["mean", *(_fmt(self.mean(m)) for m in columns)])
        widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]
        out = [f"Model {self.model_id} ({self.kind})" + (f", region {self.region}" if self.region else "")]
        out.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        out.append("  ".join("-" * w for w in widths))
        out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in lines]
        return "\n".join(out)


def evaluate(
    package: Any,
    pairs: Sequence[PairSpec],
    *,
    region: str | None = None,
    device: str = "auto",
    samples: int | None = None,
    steps: int | None = None,
    tta: bool = False,
    seed: int = 0,
    units: str | None = None,
    progress: Callable[[Any], None] | None = None,
) -> EvaluationReport:
    """Predict every pair's input with ``package`` (a path or a loaded package) and score it.

    ``region`` ("y0:y1,x0:x1") restricts the metrics to a part of each image; ``samples`` /
    ``steps`` override the diffusion defaults; ``tta`` asks a U-Net for test-time-augmentation
    variance (then its calibration is reported too). ``units``: "zscore" compares z-scores even where
    the model knows its stain's units (None: the stain's units where it knows them). ``progress``
    receives the engine's events.
    """
    from labelfree_app.core.engine import PredictionEngine, PredictSettings
    from labelfree_app.core.events import PredictionResult

    if isinstance(package, (str, Path)):
        from labelfree_app.models.package import load_package

        package = load_package(package)
    check_pairs_exist(pairs)
    manifest = package.manifest.to_dict() if hasattr(package.manifest, "to_dict") else dict(package.manifest)
    engine = PredictionEngine(package, device=device)
    box = Region.parse(region) if region else None
    normalized_units = units == "zscore" or not (manifest.get("normalization") or {}).get("output")
    rows = []
    for spec in pairs:
        settings = PredictSettings(channel=spec.input_channel, samples=samples, steps=steps, tta=tta,
                                   seed=seed, device=device, units=units)
        result: PredictionResult | None = None
        for event in engine.run(read_input_image(spec), settings):
            if isinstance(event, PredictionResult):
                result = event
            if progress is not None:
                progress(event)
        assert result is not None
        target = read_target_zyx(spec)
        if normalized_units:
            target = normalize_target(target)
        rows.append(_score(spec, result, target, box))
    units = ("z-score units of the target (per image)" if normalized_units else
             "the stain's units (z-scores mapped back with the training targets' intensities)")
    return EvaluationReport(
        model_id=str(manifest.get("id", "")), kind=str(manifest.get("kind", "")), region=region,
        rows=tuple(rows), units=units,
        settings={"samples": samples, "steps": steps, "tta": tta, "seed": seed, "device": str(engine.device),
                  "units": "zscore" if normalized_units else "stain"})


def linear_baseline(
    pairs: Sequence[PairSpec], *, region: str, input_normalization: str = "zscore", max_fit_pixels: int = 2_000_000,
) -> EvaluationReport:
    """A floor for context: per-pixel linear regression from the input channels (e.g. the planes
    of a z-stack) to the target, fitted on the pixels outside ``region`` of every pair and scored
    inside it, in the same z-score target units as a trained model's evaluation."""
    from labelfree_app.training.datasets import load_pair

    box = Region.parse(region)
    loaded = [load_pair(spec, dims=2, input_normalization=input_normalization) for spec in pairs]
    rng = np.random.default_rng(0)
    features, values, windows = [], [], []
    for pair in loaded:
        window = box.resolve(pair.spatial_shape, name=pair.name).slices
        outside = np.ones(pair.spatial_shape, dtype=bool)
        outside[window] = False
        index = np.flatnonzero(outside)
        index = rng.choice(index, size=min(index.size, max_fit_pixels // len(loaded)), replace=False)
        features.append(pair.input.reshape(pair.input.shape[0], -1)[:, index].T)
        values.append(pair.target.reshape(-1)[index])
        windows.append(window)
    design = np.concatenate(features)
    design = np.hstack([design, np.ones((design.shape[0], 1), dtype=design.dtype)])
    coefficients, *_ = np.linalg.lstsq(design.astype(np.float64), np.concatenate(values), rcond=None)
    rows = []
    for pair, window in zip(loaded, windows):
        inputs = pair.input[(slice(None), *window)]
        prediction = np.tensordot(coefficients[:-1], inputs, axes=1) + coefficients[-1]
        result = _BaselineResult(prediction=prediction[None, None].astype(np.float32))
        rows.append(_score(pair.spec, result, pair.target[(slice(None), *window)], None))
    return EvaluationReport(model_id="linear-baseline", kind="linear", region=region, rows=tuple(rows),
                            units="z-score units of the target (per image)",
                            settings={"fit": "least squares on pixels outside the region", "inputs": input_normalization})


@dataclass(frozen=True)
class _BaselineResult:
    prediction: np.ndarray
    variance: np.ndarray | None = None
    seconds: float = 0.0


def _score(spec: PairSpec, result: Any, target: np.ndarray, box: Region | None) -> EvaluationRow:
    from labelfree_app.core.metrics import nrmse, pearson_r, ssim

    prediction = np.asarray(result.prediction[0])  # (Z, Y, X)
    if prediction.shape != target.shape:
        from labelfree_app.errors import InputShapeError

        raise InputShapeError(
            f"The prediction for {spec.describe_input()} is {prediction.shape} but its target {spec.target} "
            f"is {target.shape}; check that input and target are a registered pair.")
    window = (slice(None),) * 3
    if box is not None:
        window = box.resolve(target.shape if len(box.bounds) == 3 else target.shape[1:],
                             name=Path(spec.target).name).slices
        window = window if len(window) == 3 else (slice(None), *window)
    pred, truth = prediction[window], target[window]
    calibration = None
    if result.variance is not None:
        calibration = uncertainty_calibration(pred, np.asarray(result.variance[0])[window], truth)
    return EvaluationRow(
        name=Path(spec.target).name,
        pearson_r=float(pearson_r(pred, truth)),
        nrmse=float(nrmse(pred, truth)),
        ssim=float(ssim(pred, truth)),
        median_abs_error=float(np.nanmedian(np.abs(pred - truth))),
        within_1sigma=calibration.within_1sigma if calibration else None,
        within_2sigma=calibration.within_2sigma if calibration else None,
        std_error_spearman=calibration.std_error_spearman if calibration else None,
        pixels=int(truth.size),
        seconds=float(result.seconds),
    )


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return "nan" if not math.isfinite(value) else f"{value:.4f}"


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value
