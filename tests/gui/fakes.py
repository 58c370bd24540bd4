"""A fake backend with the real backend's methods: fast, deterministic, instrumented."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import tifffile

from labelfree_app.core.events import PredictionResult, Preview, Progress
from labelfree_app.errors import ChannelError, CorruptImageError


@dataclass(frozen=True)
class FakeImage:
    data: np.ndarray  # (C, Z, Y, X)
    channel_names: tuple[str, ...]
    path: Path | None = None
    pixel_size_um: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FakeModel:
    id: str
    name: str
    kind: str
    target: str
    version: str = "0.1.0"
    dims: int = 2
    input_channels: int = 1
    source: str = "user"
    path: Path = Path(".")
    default: bool = False
    demo: bool = True
    tta: bool = False
    manifest: Any = None  # a fake_manifest() for models the Train page may start from


def fake_manifest(model: FakeModel) -> Any:
    """The manifest fields that ``models.fit`` reads (fit, ranking, what a fine-tune may start from)."""
    from types import SimpleNamespace

    architecture = "cond_denoiser_unet" if model.kind == "diffusion" else "fnet_unet"
    return SimpleNamespace(id=model.id, kind=model.kind, target=model.target, dims=model.dims, demo=False,
                           metrics={"pearson_r": 0.9}, architecture=SimpleNamespace(id=architecture),
                           input=SimpleNamespace(channels=model.input_channels, z_as_channels=False))


TRUST_R = {"good": 0.82, "uncertain": 0.61, "not trustworthy": 0.31}


def fake_trust(level: str) -> Any:
    """A ``TrustEstimate`` at ``level``, with the core's own sentences for it."""
    from labelfree_app.core.trust import TrustEstimate, explain

    reason, advice = explain(level, {"unfamiliar_share": 0.6, "pred_sd": 0.2})
    r = TRUST_R[level]
    return TrustEstimate(r, r - 0.12, r + 0.08, level, reason, advice)


def fake_trust_map(prediction_shape: Sequence[int]) -> np.ndarray:
    """Familiarity (1, Z, Y, X): 0.9 everywhere but the first 4·(z+1) columns of plane z, at 0.001."""
    c, z, y, x = prediction_shape
    familiar = np.full((1, z, y, x), 0.9, np.float32)
    for plane in range(z):
        familiar[0, plane, :, : 4 * (plane + 1)] = 0.001
    return familiar


def write_tiff(path: Path, data: np.ndarray, names: Sequence[str]) -> Path:
    """(C, Z, Y, X) float32 with channel names in the description (read back by FakeBackend)."""
    tifffile.imwrite(path, data, description=json.dumps({"channel_names": list(names)}))
    return path


class FakeBackend:
    """Stands in for CoreBackend. ``step_seconds`` slows each diffusion step (in the worker thread)."""

    def __init__(self) -> None:
        self.models = [
            FakeModel("diff-nuclei", "Diffusion nuclei", "diffusion", "DNA (DAPI)", default=True),
            FakeModel("unet-nuclei", "U-Net nuclei", "unet", "DNA (DAPI)", tta=True),
            FakeModel("unet-membrane", "U-Net membrane", "unet", "membrane"),
        ]
        self.step_seconds = 0.0
        self.preview_interval_s = 0.0  # the engine sends previews at most this often (0: every step)
        self.steps = 6
        self.samples = 2
        self.fail_with: Exception | None = None
        self.generator_closed = threading.Event()
        self.steps_run = 0
        self.runs = 0
        self.written: list[Path] = []
        self.defaults: dict[str, str] = {}
        self.large_plane_pixels = 64 * 1024 * 1024  # planes above this are shown as an overview
        self.trust: Any = None  # the TrustEstimate U-Net results carry (None: not estimated)
        self.with_trust_map = False  # whether U-Net results carry fake_trust_map()

    # --- images ---------------------------------------------------------------------------
    def read_image(self, path: Path, channel: int | str | None = None) -> FakeImage:
        try:
            with tifffile.TiffFile(path) as tif:
                data = tif.asarray().astype(np.float32)
                description = tif.pages[0].description
        except Exception as exc:
            raise CorruptImageError(f"{path.name} is damaged or not a TIFF; re-export it from the microscope software.", path=path) from exc
        names = json.loads(description).get("channel_names") if description.startswith("{") else None
        while data.ndim < 4:
            data = data[np.newaxis]
        names = tuple(names or [f"channel {i}" for i in range(data.shape[0])])
        return FakeImage(data, names, path)

    def read_plane_series(self, paths: Sequence[Path]) -> Any:
        """The real reader: it is fast, Qt-free, and its errors are what the window must show."""
        from labelfree_app.io import read_plane_series

        return read_plane_series(list(paths))

    def transmitted_channel(self, image: FakeImage) -> int:
        for index, name in enumerate(image.channel_names):
            if "bright" in name.lower() or "phase" in name.lower():
                return index
        if len(image.channel_names) == 1:
            return 0
        raise ChannelError("no transmitted-light channel")

    def write_image(self, path: Path, data: np.ndarray, axes: str, channel_names: Sequence[str] | None,
                    provenance: dict, protected: Sequence[Path] = ()) -> Path:
        assert Path(path) not in [Path(p) for p in protected]
        tifffile.imwrite(path, np.asarray(data), description=json.dumps({"axes": axes, **provenance}))
        self.written.append(path)
        return path

    # --- models ---------------------------------------------------------------------------
    def list_models(self) -> list[FakeModel]:
        return list(self.models)

    def model_manifest(self, model_id: str) -> dict[str, Any]:
        model = next(m for m in self.models if m.id == model_id)
        return {
            "id": model.id, "name": model.name, "kind": model.kind, "target": model.target,
            "description": "A fake model for tests.", "license": "BSD-3-Clause", "attribution": "tests",
            "metrics": {"pearson_r": 0.9}, "training": {"data": "synthetic"}, "demo": True,
        }

    def install_model(self, path: Path) -> FakeModel:
        model = FakeModel(path.stem, path.stem.title(), "unet", "actin")
        self.models.append(model)
        return model

    def install_fnet_model(self, path: Path, *, name: str, target: str) -> FakeModel:
        model = FakeModel("fnet-" + target.lower(), name, "unet", target)
        self.models.append(model)
        return model

    def remove_model(self, model_id: str) -> None:
        self.models = [m for m in self.models if m.id != model_id]

    def set_default_model(self, target: str, model_id: str) -> None:
        self.defaults[target] = model_id
        self.models = [
            FakeModel(**{**m.__dict__, "default": m.id == model_id}) if m.target == target else m for m in self.models
        ]

    def devices(self) -> list[Any]:
        return [type("Device", (), {"name": "cpu", "kind": "cpu", "label": "CPU (2 cores)"})()]

    # --- running --------------------------------------------------------------------------
    def run(self, image: FakeImage, model_id: str, settings: dict[str, Any]) -> Iterator[Any]:
        """Yields like the engine: loading progress, previews (throttled like the engine's), the result last."""
        self.runs += 1
        self.generator_closed.clear()
        try:
            yield Progress("loading", 1, 1, "Model loaded")
            if self.fail_with is not None:
                raise self.fail_with
            model = next(m for m in self.models if m.id == model_id)
            volume = image.data[settings.get("channel") or 0][np.newaxis]
            rng = np.random.default_rng(settings.get("seed", 0))
            truth = np.asarray(volume, dtype=np.float32) * 2.0 + 1.0
            if model.kind == "unet":
                yield Progress("tiles", 1, 1)
                variance = np.full_like(truth, 0.01) if settings.get("tta") else None
                trust_map = fake_trust_map(truth.shape) if self.with_trust_map else None
                yield PredictionResult(truth, variance=variance, model_id=model_id, settings=dict(settings),
                                       trust=self.trust, trust_map=trust_map)
                return
            samples = []
            last_preview = float("-inf")
            for sample in range(self.samples):
                x = rng.standard_normal(truth.shape).astype(np.float32)
                for step in range(self.steps):
                    if self.step_seconds:
                        time.sleep(self.step_seconds)
                    self.steps_run += 1
                    weight = (step + 1) / self.steps
                    x = (1 - weight) * x + weight * truth
                    now = time.monotonic()
                    if now - last_preview >= self.preview_interval_s or step == self.steps - 1:
                        last_preview = now
                        yield Preview("x_t", sample, step, self.steps, x)
                    yield Progress("sampling", sample * self.steps + step + 1, self.samples * self.steps)
                samples.append(x + rng.normal(0, 0.1, x.shape).astype(np.float32))
            stack = np.stack(samples)
            noise = rng.standard_normal(truth.shape).astype(np.float32)
            frames = np.stack([truth + noise * (1 - k / 3) for k in range(1, 4)])
            yield PredictionResult(
                stack.mean(0), variance=stack.var(0), frames=frames, model_id=model_id,
                settings={**settings, "samples": self.samples},
            )
        finally:
            self.generator_closed.set()

    # --- metrics --------------------------------------------------------------------------
    def pearson_r(self, observed: np.ndarray, predicted: np.ndarray) -> float:
        return float(np.corrcoef(np.ravel(observed), np.ravel(predicted))[0, 1])

    def otsu_mask(self, image: np.ndarray) -> np.ndarray:
        return np.asarray(image) > np.mean(image)

    def difference_maps(self, observed: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
        diff = np.asarray(observed, np.float32) - np.asarray(predicted, np.float32)
        return {"observed_minus_predicted": diff, "predicted_minus_observed": -diff, "absolute": np.abs(diff)}

