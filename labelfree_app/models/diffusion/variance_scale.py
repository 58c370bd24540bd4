"""Where a diffusion model's fitted variance scale applies (``diffusion.variance_scale``).

A few-step sampler spreads its samples less than the many-step one a model's calibration was
measured with. ``scripts/calibrate_diffusion_steps.py`` fits one std factor for one way of
sampling (steps, sampler, eta) on the model's validation data. It applies only when a run samples
exactly that way; at every other step count (the reference steps included) the samples' own
spread is used unchanged: there is no interpolation between step counts, because no other count
was checked. No torch here: ``core.settings`` records the applied scale in the provenance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

VARIANCE_SCALE_RANGE = (0.1, 10.0)  # a std factor outside this is a broken fit, not a calibration


@dataclass(frozen=True)
class VarianceScale:
    """Sampling with fewer steps spreads the samples less: at ``steps`` steps (with ``sampler`` and
    ``eta``) the std is multiplied by ``scale`` (the variance by its square) so that it keeps the
    calibration measured at ``reference_steps``. Fitted by ``scripts/calibrate_diffusion_steps.py``;
    ``fitted_on`` says on what, ``figures`` holds its validation and held-out figures (free-form)."""

    steps: int
    sampler: str
    scale: float
    eta: float = 0.0
    reference_steps: int = 25
    fitted_on: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


def variance_scale(diffusion: Mapping[str, Any] | None, *, steps: int, sampler: str, eta: float) -> float | None:
    """The std factor for sampling with ``steps`` / ``sampler`` / ``eta`` under the manifest's
    ``diffusion`` section (a dict), or None where no fitted scale applies."""
    fitted = (diffusion or {}).get("variance_scale")
    if not fitted:
        return None
    if int(fitted["steps"]) != int(steps) or str(fitted["sampler"]) != str(sampler):
        return None
    if sampler == "ddim" and abs(float(fitted.get("eta", 0.0)) - float(eta)) > 1e-9:  # eta only moves DDIM
        return None
    return float(fitted["scale"])
