"""Events the training loop yields; the CLI turns them into tqdm, the GUI into signals."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union


@dataclass(frozen=True)
class LoadingData:
    """Reading and checking the pairs before training (``done`` of ``total`` read)."""

    done: int
    total: int
    name: str = ""


@dataclass(frozen=True)
class TrainStarted:
    """Data is loaded and checked; ``start_step`` > 0 when a checkpoint was resumed."""

    start_step: int
    max_steps: int
    device: str
    work_dir: Path
    train_pairs: int
    val_images: int
    in_channels: int
    parameters: int


@dataclass(frozen=True)
class StepDone:
    """One optimisation step finished; ``seconds`` counts training time over all runs."""

    step: int
    max_steps: int
    loss: float
    lr: float
    seconds: float


@dataclass(frozen=True)
class ValidationDone:
    """Validation Pearson r (and for diffusion the calibration figures) at ``step``.

    ``preview`` is a ``validation.ValPreview`` of the first validation image (for live views).
    """

    step: int
    val_r: float
    is_best: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    preview: Any = None


@dataclass(frozen=True)
class CheckpointSaved:
    step: int
    path: Path


@dataclass(frozen=True)
class TrainFinished:
    """The package is written. ``stop_reason``: "max_steps", "max_minutes", "early_stop" or "stopped"."""

    package: Path
    steps: int
    seconds: float
    stop_reason: str
    best_val_r: float | None
    best_step: int | None
    # The package's weights: the final ones after an annealed run, else the best validated ones.
    kept_val_r: float | None = None
    kept_step: int | None = None

    def summary(self) -> str:
        """One sentence on which weights the package holds."""
        if self.kept_step is None:
            return "no validation score"
        kept = f"validation r = {self.kept_val_r:.3f} at step {self.kept_step}"
        if self.kept_step == self.best_step or self.best_val_r is None:
            return f"kept the best weights ({kept})"
        return (f"kept the final, annealed weights ({kept}; the best validation r was {self.best_val_r:.3f} "
                f"at step {self.best_step})")


TrainEvent = Union[LoadingData, TrainStarted, StepDone, ValidationDone, CheckpointSaved, TrainFinished]
