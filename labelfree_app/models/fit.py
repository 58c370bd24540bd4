"""Which models fit an image, and which one is the best default for it.

One rule for every door (CLI ``predict`` and ``batch``, the GUI's model list): a model fits when
its first layer can take the image as the engine would feed it; among the fitting models the
stored default comes first, then real models before demo ones, a model that uses the whole z-stack
before one that goes plane by plane, nuclei (DNA) before other targets when none was asked for,
a U-Net before a diffusion model (seconds instead of minutes) and, last, the better held-out
Pearson r.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from labelfree_app.errors import ModelNotFoundError


@dataclass(frozen=True)
class InputFacts:
    """What decides fit: the image's z-planes and channels."""

    planes: int
    channels: int = 1

    @classmethod
    def of(cls, image: Any) -> "InputFacts":
        z = int(image.shape_zyx[0])
        return cls(planes=z, channels=int(image.n_channels))

    def describe(self) -> str:
        """The planes only: a one-channel model is fed the picked (transmitted-light) channel."""
        return "a single plane" if self.planes == 1 else f"a {self.planes}-plane z-stack"


def fit_problem(manifest: Any, facts: InputFacts) -> str | None:
    """None when ``manifest``'s model can take the image; otherwise why not, as a short phrase."""
    spec = manifest.input
    if spec.z_as_channels:
        if facts.planes != spec.channels:
            return f"takes a {spec.channels}-plane z-stack; this image is {facts.describe()}"
        return None
    if manifest.dims == 3 and facts.planes < 2:
        return "is a 3D model and needs a z-stack; this image is a single plane"
    if spec.channels > 1 and facts.channels != spec.channels:
        return f"takes {spec.channels} channels; this image has {facts.channels}"
    return None


def uses_whole_stack(manifest: Any, facts: InputFacts) -> bool:
    return facts.planes > 1 and (manifest.input.z_as_channels or manifest.dims == 3)


def _held_out_r(manifest: Any) -> float:
    value = (manifest.metrics or {}).get("pearson_r")
    return float(value) if isinstance(value, (int, float)) else 0.0


DEFAULT_TARGET = "dna"  # without a target asked for, nuclei are what most users want first


def rank_key(manifest: Any, facts: InputFacts) -> tuple:
    return (bool(manifest.demo), not uses_whole_stack(manifest, facts),
            not str(manifest.target).strip().casefold().startswith(DEFAULT_TARGET), manifest.kind != "unet",
            -_held_out_r(manifest))


def best_fitting(packages: Iterable[Any], facts: InputFacts, preferred: Iterable[str] = ()) -> Any:
    """The best package for an image (``preferred``: stored default ids, used first when they fit)."""
    packages = list(packages)
    fitting = [p for p in packages if fit_problem(p.manifest, facts) is None]
    if not fitting:
        reasons = "; ".join(f"{p.manifest.id} {fit_problem(p.manifest, facts)}" for p in packages[:4])
        raise ModelNotFoundError(
            f"No installed model takes {facts.describe()} ({reasons}); install or train a model for this kind "
            "of image.")
    for model_id in preferred:
        for package in fitting:
            if package.manifest.id == model_id:
                return package
    return min(fitting, key=lambda p: rank_key(p.manifest, facts))


def default_for_image(entries: Iterable[Any], facts: InputFacts) -> Any | None:
    """The window's default for an image (``best_fitting`` over every listed model); None when none fits.

    The models someone set as a default (``stored_default``) come first when they fit, the best ranked
    of them first; a model that is merely its target's default for a single plane has no say here, so a
    13-plane stack gets the ISL model rather than the single-plane generalist.
    """
    known = [e for e in entries if getattr(e, "manifest", None) is not None]
    stored = sorted((e for e in known if getattr(e, "stored_default", False)),
                    key=lambda e: rank_key(e.manifest, facts))
    try:
        return best_fitting(known, facts, [e.manifest.id for e in stored]) if known else None
    except ModelNotFoundError:
        return None


FINETUNABLE = {"fnet_unet": "unet", "cond_denoiser_unet": "diffusion"}  # architecture id -> model type


def start_problem(manifest: Any, planes: int, model_type: str) -> str | None:
    """None when a training run of ``model_type`` on inputs of ``planes`` z-planes can start from this
    model (``labelfree train --init-from``); otherwise why not. A single-plane U-Net can start a
    z-stack model: its first layer is spread over the planes."""
    kind = FINETUNABLE.get(manifest.architecture.id)
    if kind is None:
        return "cannot be fine-tuned (LabelFree does not train its network type)"
    if kind != model_type:
        return f"is a {kind} model, not a {model_type} model"
    if manifest.dims != 2:
        return "is a 3D model; the app trains 2D models"
    channels = int(manifest.input.channels)
    if channels == planes or (channels == 1 and kind == "unet"):
        return None
    return f"takes {channels} input plane(s); these inputs have {planes}"


def best_start(packages: Iterable[Any], planes: int, model_type: str) -> Any | None:
    """The model a fine-tuning run should start from by default: fitting, real, best ranked; None if none."""
    fitting = [p for p in packages if start_problem(p.manifest, planes, model_type) is None]
    facts = InputFacts(planes=planes)
    return min(fitting, key=lambda p: rank_key(p.manifest, facts)) if fitting else None
