"""Self-test: every bundled model predicts the demo input and must match stored statistics.

``labelfree --self-test`` (and Help ▸ Self-test in the GUI) runs this in an installed app to show
that the bundle is complete: the models load (weights checked against their sha256), torch or
ONNX Runtime runs them, the OME-TIFF writer and reader work, and the numbers are the expected ones.

The expected statistics live in ``resources/selftest_expected.json`` (made by
``scripts/make_selftest_expected.py``). They are compared with tolerances relative to the
expected image's spread, loose enough for CPU vs GPU and ONNX Runtime vs torch differences and
tight enough that a wrong model, wrong weights or a broken normalization fail. Diffusion runs are
kept cheap: a crop, 2 samples, 5 steps, a fixed seed (the noise is drawn on the CPU, so it is the
same on every device).

No Qt here: the CLI and the GUI dialog both drive ``iter_self_test``.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Generator, Sequence

import numpy as np

from labelfree_app import paths
from labelfree_app.core.drive import drive
from labelfree_app.core.settings import is_diffusion
from labelfree_app.errors import LabelFreeError

EXPECTED_FILE = "selftest_expected.json"
DEMO_FILE = paths.DEMO_IMAGE
FORMAT_VERSION = 1
CROP: tuple[slice, slice] = (slice(0, 256), slice(0, 256))  # Y, X of the demo input
GRID = 8  # the prediction is also compared as GRID x GRID block means
STAT_NAMES = ("mean", "std", "p01", "p50", "p99")
DIFFUSION_SETTINGS: dict[str, Any] = {"samples": 2, "steps": 5, "sampler": "ddim", "eta": 0.0, "seed": 0}


@dataclass(frozen=True)
class Tolerance:
    """How far a result may be from the expected one.

    ``rel`` bounds each statistic's difference as a fraction of the expected standard deviation;
    ``min_r`` is the least Pearson r allowed between the actual and expected block means.
    """

    rel: float
    min_r: float


TOLERANCES: dict[str, Tolerance] = {
    "unet": Tolerance(rel=0.03, min_r=0.995),
    "diffusion": Tolerance(rel=0.10, min_r=0.97),
}


@dataclass(frozen=True)
class ImageStats:
    """Summary statistics of one prediction, as stored in the expected-statistics file."""

    mean: float
    std: float
    p01: float
    p50: float
    p99: float
    shape: tuple[int, ...]
    blocks: tuple[float, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["shape"] = list(self.shape)
        data["blocks"] = [round(v, 6) for v in self.blocks]
        for name in STAT_NAMES:
            data[name] = round(float(data[name]), 6)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageStats:
        return cls(
            **{name: float(data[name]) for name in STAT_NAMES},
            shape=tuple(int(v) for v in data["shape"]),
            blocks=tuple(float(v) for v in data.get("blocks", ())),
        )


@dataclass(frozen=True)
class ModelCheck:
    """The outcome for one model; ``problems`` is empty when it passed."""

    model_id: str
    kind: str
    seconds: float
    device: str = ""
    backend: str = ""
    problems: tuple[str, ...] = ()
    stats: ImageStats | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        """One line for the report: PASS/FAIL, model, time and the first problems."""
        where = ", ".join(v for v in (self.device, self.backend) if v)
        head = f"{'PASS' if self.ok else 'FAIL'} {self.model_id} ({self.kind}{', ' + where if where else ''}) {self.seconds:.1f} s"
        return head if self.ok else head + "\n" + "\n".join(f"    - {p}" for p in self.problems)


@dataclass(frozen=True)
class SelfTestStep:
    """Progress: ``index`` of ``total`` models is starting."""

    index: int
    total: int
    message: str


@dataclass(frozen=True)
class SelfTestReport:
    """All model checks plus problems not tied to one model (a missing file, a missing model)."""

    checks: tuple[ModelCheck, ...]
    problems: tuple[str, ...] = ()
    output_dir: Path | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.checks) and not self.problems and all(c.ok for c in self.checks)

    def footer(self) -> str:
        """The problems not tied to a model, then the verdict line."""
        lines = [f"FAIL {p}" for p in self.problems]
        passed = sum(c.ok for c in self.checks)
        verdict = "Self-test passed" if self.ok else "Self-test FAILED"
        lines.append(f"{verdict}: {passed}/{len(self.checks)} models in {self.seconds:.1f} s"
                     + (f"; outputs in {self.output_dir}" if self.output_dir else "") + ".")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line per model, then the footer: for a terminal or a dialog."""
        return "\n".join([c.line() for c in self.checks] + [self.footer()])


SelfTestEvent = SelfTestStep | ModelCheck


# --- statistics ------------------------------------------------------------------------------
def block_means(image: np.ndarray, grid: int = GRID) -> np.ndarray:
    """Means of a ``grid`` x ``grid`` partition of a 2D image (edges dropped to fit evenly)."""
    height, width = (image.shape[0] // grid) * grid, (image.shape[1] // grid) * grid
    trimmed = image[:height, :width]
    return trimmed.reshape(grid, height // grid, grid, width // grid).mean(axis=(1, 3)).ravel()


def image_stats(prediction: np.ndarray) -> ImageStats:
    """Statistics of a (C, Z, Y, X) prediction; blocks are taken from its first channel and plane."""
    data = np.asarray(prediction, dtype=np.float64)
    p01, p50, p99 = np.percentile(data, [1, 50, 99])
    plane = data.reshape((-1,) + data.shape[-2:])[0]
    return ImageStats(mean=float(data.mean()), std=float(data.std()), p01=float(p01), p50=float(p50),
                      p99=float(p99), shape=tuple(int(s) for s in data.shape),
                      blocks=tuple(float(v) for v in block_means(plane)))


def compare_stats(actual: ImageStats, expected: ImageStats, tolerance: Tolerance) -> list[str]:
    """Sentences naming each statistic outside the tolerance (empty when all match)."""
    if actual.shape != expected.shape:
        return [f"the prediction has shape {actual.shape}, expected {expected.shape}"]
    problems: list[str] = []
    scale = max(abs(expected.std), 1e-6)
    for name in STAT_NAMES:
        got, want = getattr(actual, name), getattr(expected, name)
        if not np.isfinite(got) or abs(got - want) > tolerance.rel * scale:
            problems.append(f"{name} is {got:.5g}, expected {want:.5g} ± {tolerance.rel * scale:.2g}")
    if expected.blocks and len(actual.blocks) == len(expected.blocks):
        a, b = np.asarray(actual.blocks), np.asarray(expected.blocks)
        r = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
        if not r >= tolerance.min_r:  # also catches nan
            problems.append(f"the pattern of the prediction differs (block correlation r = {r:.3f}, "
                            f"expected ≥ {tolerance.min_r})")
    return problems


# --- inputs ----------------------------------------------------------------------------------
def expected_path() -> Path:
    """The bundled expected-statistics file."""
    return paths.resources_dir() / EXPECTED_FILE


def load_expected(path: Path | None = None) -> dict[str, Any]:
    """The expected statistics (``{"models": {id: {...}}, ...}``); a LabelFreeError if unreadable."""
    path = path or expected_path()
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LabelFreeError(f"The self-test's expected results {path} cannot be read ({exc}).", path=path) from exc
    if data.get("format_version") != FORMAT_VERSION or not isinstance(data.get("models"), dict):
        raise LabelFreeError(f"The self-test's expected results {path} are not in the expected format.", path=path)
    return data


def demo_input() -> Any:
    """The demo bright-field image cropped to ``CROP`` (an ``io.Image``)."""
    from labelfree_app.io import read_image
    from labelfree_app.io.image import Image

    path = paths.demo_image()
    image = read_image(path)
    data = np.ascontiguousarray(image.data[..., CROP[0], CROP[1]])
    return Image(data=data, axes=image.axes, channel_names=image.channel_names,
                 pixel_size_um=image.pixel_size_um, path=path)


def input_for(package: Any, image: Any) -> Any:
    """``image`` shaped for ``package``: its single plane repeated where the model takes a z-stack.

    The demo input is one plane; a model that reads a z-stack as channels (or a 3D model) gets
    that plane repeated. Not a realistic input, but a fixed one, which is what a self-test needs.
    """
    from labelfree_app.io.image import Image

    manifest = package.manifest
    if manifest.input.z_as_channels:
        planes = int(manifest.input.channels)
    elif manifest.dims == 3:
        planes = int(manifest.tiling.tile_shape[0])
    else:
        return image
    data = np.ascontiguousarray(np.repeat(image.data[..., :1, :, :], planes, axis=-3))
    return Image(data=data, axes=image.axes, channel_names=image.channel_names,
                 pixel_size_um=image.pixel_size_um, path=image.path)


def bundled_packages() -> list[Any]:
    """Every model package shipped with the app (folder name order); broken ones raise."""
    from labelfree_app.models.package import load_package

    folder = paths.bundled_models_dir()
    if not folder.is_dir():
        raise LabelFreeError(f"The bundled models folder {folder} is missing; reinstall LabelFree.", path=folder)
    return [load_package(p) for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")]


def selftest_settings(kind: str, device: str) -> Any:
    """Prediction settings of the self-test: channel 0 of the demo; cheap diffusion; the network's own
    z-scores, so the stored statistics and tolerances hold for every model, stain units or not."""
    from labelfree_app.core.engine import PredictSettings

    extra = DIFFUSION_SETTINGS if is_diffusion(kind) else {}
    # fp32: the stored statistics are the float32 network's (an int8 network is matched to its checked sha256)
    return PredictSettings(channel=0, device=device, units="zscore", precision="fp32", **extra)


def predict_stats(package: Any, image: Any, device: str = "auto") -> tuple[Any, ImageStats, str]:
    """Run one package on ``image``; returns (result, statistics, backend name)."""
    from labelfree_app.core.engine import PredictionEngine

    engine = PredictionEngine(package, device=device)
    result = engine.predict(input_for(package, image), selftest_settings(package.manifest.kind, device))
    backend = str(getattr(getattr(engine, "_runner", None), "backend", "") or "torch")
    return result, image_stats(result.prediction), backend


# --- the run ---------------------------------------------------------------------------------
def check_model(package: Any, image: Any, expected: dict[str, Any] | None, out_dir: Path,
                device: str = "auto") -> ModelCheck:
    """Predict, write and read back, compare with ``expected`` (this model's entry)."""
    from labelfree_app.export import output_paths, write_result
    from labelfree_app.io import read_image

    manifest = package.manifest
    start = time.perf_counter()
    problems: list[str] = []
    stats: ImageStats | None = None
    device_name = backend = ""
    try:
        result, stats, backend = predict_stats(package, image, device)
        device_name = result.device
        if not np.all(np.isfinite(result.prediction)):
            problems.append("the prediction contains NaN or infinite values")
        written = write_result(result, manifest.to_dict(), [image.path], output_paths(image.path, manifest.id, out_dir),
                               hash_inputs=False)
        back = read_image(written[0]).data
        if back.shape != result.prediction.shape or not np.allclose(back, result.prediction, equal_nan=True):
            problems.append(f"the prediction written to {written[0]} reads back differently")
        if expected is None:
            problems.append("no expected statistics are stored for this model (run scripts/make_selftest_expected.py)")
        else:
            tolerance = TOLERANCES.get(manifest.kind, TOLERANCES["unet"])
            problems += compare_stats(stats, ImageStats.from_json(expected["stats"]), tolerance)
    except LabelFreeError as exc:
        problems.append(str(exc))
    except Exception as exc:  # noqa: BLE001 - a self-test reports every failure, it never crashes
        problems.append(f"{type(exc).__name__}: {exc}")
    return ModelCheck(model_id=manifest.id, kind=manifest.kind, seconds=time.perf_counter() - start,
                      device=device_name, backend=backend, problems=tuple(problems), stats=stats)


def iter_self_test(
    device: str = "auto",
    expected_file: Path | None = None,
    out_dir: Path | None = None,
    model_ids: Sequence[str] | None = None,
) -> Generator[SelfTestEvent, None, SelfTestReport]:
    """Check every bundled model (or ``model_ids``); yields steps and checks, returns the report.

    Outputs go to ``out_dir`` (default: a new temporary folder, kept so a failure can be looked at).
    """
    start = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="labelfree-selftest-"))
    out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    checks: list[ModelCheck] = []
    try:
        expected = load_expected(expected_file)["models"]
        packages = bundled_packages()
        image = demo_input()
    except Exception as exc:  # noqa: BLE001 - a broken install (missing file or module) is a finding
        message = str(exc) if isinstance(exc, LabelFreeError) else f"{type(exc).__name__}: {exc}"
        return SelfTestReport(checks=(), problems=(message,), output_dir=out, seconds=time.perf_counter() - start)
    found = {p.manifest.id for p in packages}
    if model_ids:
        problems += [f"model {m}: it is not bundled" for m in model_ids if m not in found]
        packages = [p for p in packages if p.manifest.id in model_ids]
    else:
        problems += [f"model {m}: expected but not bundled" for m in sorted(set(expected) - found)]
    for index, package in enumerate(packages):
        yield SelfTestStep(index, len(packages), f"Checking {package.manifest.id} ({index + 1}/{len(packages)})…")
        check = check_model(package, image, expected.get(package.manifest.id), out, device)
        checks.append(check)
        yield check
    return SelfTestReport(checks=tuple(checks), problems=tuple(problems), output_dir=out,
                          seconds=time.perf_counter() - start)


def run_self_test(on_event: Callable[[SelfTestEvent], None] | None = None, **kwargs: Any) -> SelfTestReport:
    """Run ``iter_self_test`` to the end (``on_event`` sees each step and check)."""
    return drive(iter_self_test(**kwargs), on_event)


def expected_entry(package: Any, stats: ImageStats) -> dict[str, Any]:
    """One model's entry in the expected-statistics file."""
    manifest = package.manifest
    settings = DIFFUSION_SETTINGS if is_diffusion(manifest) else {}
    return {"kind": manifest.kind, "weights_sha256": manifest.weights.sha256, "settings": dict(settings),
            "stats": stats.to_json()}


__all__ = [
    "ImageStats", "ModelCheck", "SelfTestReport", "SelfTestStep", "Tolerance", "TOLERANCES", "block_means",
    "compare_stats", "demo_input", "expected_entry", "image_stats", "iter_self_test", "load_expected",
    "run_self_test",
]
