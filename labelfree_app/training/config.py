"""What a training run is asked to do: paired data, the network, and how long to train.

``TrainConfig`` is a frozen value; the CLI and the GUI build one and hand it to
``labelfree_app.training.loop.train`` (or ``run_training`` for a generator of events).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from labelfree_app.errors import TrainingDataError
from labelfree_app.models.manifest import DiffusionSettings as _PackageDefaults
from labelfree_app.models.manifest import valid_model_id

PACKAGE_DEFAULTS = _PackageDefaults()  # the prediction defaults a package records, from one table

GLOB_CHARS = "*?["


@dataclass(frozen=True)
class PairSpec:
    """One training pair, as files on disk.

    ``input`` is an image path, a glob pattern of per-plane files (a Z-stack assembled in natural
    order: ``z_depth-2`` before ``z_depth-10``), or a tuple of per-plane paths in Z order.
    ``input_channel`` / ``target_channel`` pick a channel (name or index) from multi-channel
    files; input and target may be the same multi-channel file. ``plane`` takes one Z plane of a
    stack input as a single-plane image. ``weight`` is the pair's share in patch drawing relative to
    the others (e.g. 1/fields of its source, so every source counts alike). ``pixel_size_um``
    overrides the pixel size the file states (used to rescale to the model's canonical size).
    """

    input: str | tuple[str, ...]
    target: str
    input_channel: str | int | None = None
    target_channel: str | int | None = None
    plane: int | None = None
    weight: float = 1.0
    pixel_size_um: float | None = None

    @property
    def is_plane_series(self) -> bool:
        return isinstance(self.input, tuple) or any(ch in self.input for ch in GLOB_CHARS)

    def describe_input(self) -> str:
        if isinstance(self.input, tuple):
            first = self.input[0] if self.input else "?"
            return f"{first} (+{len(self.input) - 1} planes)"
        return str(self.input)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"input": list(self.input) if isinstance(self.input, tuple) else self.input,
                                "target": self.target}
        if self.input_channel is not None:
            data["input_channel"] = self.input_channel
        if self.target_channel is not None:
            data["target_channel"] = self.target_channel
        if self.plane is not None:
            data["plane"] = self.plane
        if self.weight != 1.0:
            data["weight"] = self.weight
        if self.pixel_size_um is not None:
            data["pixel_size_um"] = self.pixel_size_um
        return data


@dataclass(frozen=True)
class AugmentSettings:
    """Input-only augmentations for what differs between microscopes (all off by default).

    ``gamma``: log-gamma drawn from U(-g, g); ``blur_sigma``: Gaussian defocus blur with sigma
    from U(0, s) px on half the patches; ``noise``: additive Gaussian noise with std from U(0, n)
    times the patch's std; ``scale``: zoom drawn log-uniformly from (low, high) for pairs whose pixel
    size is unknown; ``scale_known``: the same for pairs already rescaled to the canonical size;
    ``vignetting``: a smooth multiplicative illumination field of up to this relative strength on
    half the patches; ``polarity``: the share of patches whose contrast is inverted (dark vs bright
    halos); ``quantize``: the share of patches quantized to 8 bits over their range; ``empty_stretch``:
    the share of cell-free patches (target below its mean) stretched over their own 1-99.8 percentile
    range, as a whole empty field is at prediction time, so that stretched noise stays background.
    """

    gamma: float = 0.0
    blur_sigma: float = 0.0
    noise: float = 0.0
    scale: tuple[float, float] | None = None
    scale_known: tuple[float, float] | None = None
    vignetting: float = 0.0
    polarity: float = 0.0
    quantize: float = 0.0
    empty_stretch: float = 0.0

    @property
    def max_scale(self) -> float:
        return max([1.0, *(self.scale or ()), *(self.scale_known or ())])


MICROSCOPE_AUGMENT = AugmentSettings(gamma=0.4, blur_sigma=1.5, noise=0.3, scale=(0.6, 1.6), scale_known=(0.9, 1.1))
# The generalist's: wider zooms, uneven illumination, both halo polarities, 8-bit cameras, empty fields.
GENERALIST_AUGMENT = AugmentSettings(gamma=0.4, blur_sigma=1.5, noise=0.3, scale=(0.4, 2.5), scale_known=(0.8, 1.25),
                                     vignetting=0.5, polarity=0.25, quantize=0.2, empty_stretch=0.5)


@dataclass(frozen=True)
class UNetSettings:
    """fnet-style U-Net regressor and its loss."""

    depth: int = 4
    base_channels: int = 32
    loss: str = "mse"  # "mse" | "l1"
    ema_decay: float = 0.0  # >0: validate and keep an exponential moving average of the weights


@dataclass(frozen=True)
class DiffusionSettings:
    """Conditional denoiser, noise schedule and the defaults written to the package."""

    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 1
    attention_levels: tuple[int, ...] = (3,)
    dropout: float = 0.0
    patch_size: int = 1  # >1 folds p×p pixel blocks into channels: ~p² cheaper per step
    schedule: str = "cosine"
    train_steps: int = 1000
    prediction: str = "v"  # "eps" | "v"
    ema_decay: float = 0.999
    # A trained U-Net package: diffusion then samples the residual around its prediction (CorrDiff-style).
    mean_model: str | None = None
    # Package defaults for prediction.
    sampler: str = "ddim"
    sampling_steps: int = 25
    samples: int = PACKAGE_DEFAULTS.samples
    eta: float = 0.0
    # Validation during training: few samples and steps keep it affordable.
    val_samples: int = 4
    val_sampling_steps: int = 10
    val_max_shape: tuple[int, ...] | None = (256, 256)


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. ``out_dir`` receives the model package.

    Work files (``log.csv``, ``checkpoints/``, ``best.safetensors``) go to ``work_dir``, by
    default ``<out_dir>.training`` next to the package, so the package folder stays clean.
    ``max_steps`` counts all steps including earlier runs that are resumed; ``max_minutes``
    is the wall-clock budget of this run.
    """

    pairs: tuple[PairSpec, ...]
    out_dir: Path
    model_type: str = "unet"  # "unet" | "diffusion"
    dims: int = 2
    # Validation: a region of every training image ("y0:y1,x0:x1"), and/or separate pairs.
    val_region: str | None = None
    val_pairs: tuple[PairSpec, ...] = ()
    # Data.
    input_normalization: str = "zscore"  # "zscore" | "percentile"
    patch_shape: tuple[int, ...] = (128, 128)
    batch_size: int = 8
    buffer_size: int = 16
    buffer_switch_every: int = 2000  # batches between swapping one buffered image
    foreground_weight: float = 0.0  # 0..1: share of patches drawn towards foreground
    augment: bool = True
    intensity_jitter: float = 0.0  # input brightness/contrast jitter (z-score units; 0 = off)
    augmentation: AugmentSettings = field(default_factory=AugmentSettings)
    pixel_size_um: float | None = None  # canonical pixel size: pairs that state theirs are rescaled to it
    # Fine-tuning: an installed model id or a package path whose weights and normalization start the run.
    init_from: str | None = None
    early_stop_patience: int = 0  # validations without a better val_r before stopping (0 = never)
    # Learning curves: the network's weights are also saved after these many minutes of training.
    snapshot_minutes: tuple[float, ...] = ()
    # Optimisation.
    max_steps: int = 2000
    max_minutes: float | None = None
    lr: float | None = None  # None: 1e-3 for U-Net, 2e-4 for diffusion
    weight_decay: float = 1e-4
    lr_schedule: str = "cosine"  # "cosine" | "step" | "constant"
    warmup_steps: int = 100
    grad_clip: float | None = 1.0
    amp: bool = True  # mixed precision, used on CUDA only
    seed: int = 0
    device: str = "auto"
    # Bookkeeping.
    val_every: int = 250
    checkpoint_every: int = 500
    resume: bool = False
    overwrite: bool = False
    work_dir: Path | None = None
    # Networks.
    unet: UNetSettings = field(default_factory=UNetSettings)
    diffusion: DiffusionSettings = field(default_factory=DiffusionSettings)
    # Model card.
    model_id: str | None = None
    name: str | None = None
    version: str = "0.1.0"
    description: str = ""
    target_name: str = "fluorescence"
    input_modality: str = "transmitted light"
    license: str = "unspecified"  # the training data's; a fine-tuned model adds its parent's (training.licensing)
    attribution: str = ""
    data_description: str = ""
    demo: bool = False
    tile_shape: tuple[int, ...] | None = None
    halo: tuple[int, ...] | None = None

    @property
    def resolved_work_dir(self) -> Path:
        return Path(self.work_dir) if self.work_dir is not None else Path(f"{self.out_dir}.training")

    @property
    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1e-3 if self.model_type == "unet" else 2e-4

    def check(self) -> None:
        """Refuse settings no run can use, with one sentence (``TrainingDataError``)."""
        if self.dims not in (2, 3):
            raise TrainingDataError(f"dims must be 2 or 3, not {self.dims}.")
        if len(self.patch_shape) != self.dims:
            raise TrainingDataError(
                f"The patch shape {list(self.patch_shape)} needs {self.dims} sizes for a {self.dims}D model.")
        if self.batch_size < 1 or self.max_steps < 0:
            raise TrainingDataError("The batch size must be at least 1 and the step count not negative.")
        if not 0.0 <= self.foreground_weight <= 1.0:
            raise TrainingDataError(f"The foreground weight must be between 0 and 1, not {self.foreground_weight}.")
        if not 0.0 <= self.intensity_jitter <= 1.0:
            raise TrainingDataError(f"The intensity jitter must be between 0 and 1, not {self.intensity_jitter}.")
        if not 0.0 <= self.unet.ema_decay < 1.0:
            raise TrainingDataError(f"The weight-averaging decay must be at least 0 and below 1, not {self.unet.ema_decay}.")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr >= 0):
            raise TrainingDataError(f"The learning rate must be a number of 0 or more, not {self.lr}.")
        if self.max_minutes is not None and not (math.isfinite(self.max_minutes) and self.max_minutes > 0):
            raise TrainingDataError(f"The time budget must be a number of minutes above 0, not {self.max_minutes}.")
        if self.val_every < 0 or self.checkpoint_every < 0:
            raise TrainingDataError("The validation and checkpoint intervals must not be negative (0 = never).")
        if self.model_id is not None and not valid_model_id(self.model_id):
            raise TrainingDataError(f"The model id '{self.model_id}' may only hold a-z, 0-9, '.', '_' and '-', "
                                    "starting with a letter or digit; choose another id.")
        if self.input_normalization not in ("zscore", "percentile", "minmax"):
            raise TrainingDataError(f"Unknown input normalization '{self.input_normalization}'; use zscore or percentile.")

    def with_changes(self, **changes: Any) -> "TrainConfig":
        return replace(self, **changes)

    def settings_dict(self) -> dict[str, Any]:
        """JSON-ready settings for the manifest (data and paths are recorded separately)."""
        data = asdict(self)
        for key in ("pairs", "val_pairs", "out_dir", "work_dir", "resume", "overwrite", "model_id", "name",
                    "version", "description", "license", "attribution", "data_description", "demo"):
            data.pop(key, None)
        data["lr"] = self.resolved_lr
        if self.model_type == "unet":
            data.pop("diffusion")
        else:
            data.pop("unet")
        return _jsonable(data)

    def fingerprint(self) -> dict[str, Any]:
        """Settings that must match for a checkpoint to be resumed."""
        if self.model_type == "unet":
            network = asdict(self.unet)
        else:
            keys = ("base_channels", "channel_mults", "num_res_blocks", "attention_levels", "patch_size", "schedule",
                    "train_steps", "prediction", "mean_model")
            network = {key: getattr(self.diffusion, key) for key in keys}
        return _jsonable({
            "model_type": self.model_type,
            "dims": self.dims,
            "network": network,
            "patch_shape": self.patch_shape,
            "input_normalization": self.input_normalization,
            "init_from": self.init_from,
        })


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
