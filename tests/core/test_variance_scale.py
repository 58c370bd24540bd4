"""A diffusion model's fitted variance scale (``diffusion.variance_scale``): applied to the variance,
the trust features and the provenance exactly when a run samples the way it was fitted, never
otherwise; read, written and refused by the manifest."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from labelfree_app.core.engine import PredictionEngine
from labelfree_app.core.events import PredictionResult
from labelfree_app.core.settings import PredictSettings
from labelfree_app.errors import ManifestError
from labelfree_app.io import Image
from labelfree_app.models.diffusion.variance_scale import variance_scale
from labelfree_app.models.manifest import Manifest, VarianceScale
from labelfree_app.models.package import load_package, save_package
from tests.factories import diffusion_manifest, make_diffusion_package

SCALE = 1.5
FITTED = {"steps": 3, "sampler": "dpmpp2m", "scale": SCALE, "reference_steps": 6, "fitted_on": "synthetic"}
KWARGS = {"dims": 2, "in_channels": 1, "out_channels": 1, "base_channels": 8, "channel_mults": [1, 2],
          "num_res_blocks": 1}


def _image() -> Image:
    rng = np.random.default_rng(3)
    return Image(data=rng.normal(0, 1, (1, 1, 40, 48)).astype(np.float32), axes="CZYX", channel_names=("BF",))


def _run(package, **settings) -> PredictionResult:
    engine = PredictionEngine(package, device="cpu")
    result = None
    for event in engine.run(_image(), PredictSettings(samples=3, seed=4, **settings)):
        if isinstance(event, PredictionResult):
            result = event
    assert result is not None
    return result


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """The same network twice: with a variance scale fitted for 3 DPM-Solver++ steps, and without."""
    folder = tmp_path_factory.mktemp("models")
    scaled = make_diffusion_package(folder, model_id="scaled", sampler="dpmpp2m", steps=3, variance_scale=FITTED)
    plain = make_diffusion_package(folder, model_id="plain", sampler="dpmpp2m", steps=3)
    return scaled, plain


def test_the_variance_is_scaled_by_the_square_at_the_fitted_steps_and_the_mean_is_untouched(packages):
    scaled, plain = packages
    a, b = _run(scaled), _run(plain)  # both default to the fitted 3 steps
    np.testing.assert_array_equal(a.prediction, b.prediction)
    assert float(b.variance.mean()) > 0
    np.testing.assert_allclose(a.variance, b.variance * SCALE**2, rtol=1e-5)


@pytest.mark.parametrize("other", [{"steps": 6}, {"steps": 2}, {"sampler": "ddim"}])
def test_other_step_counts_or_samplers_keep_the_samples_own_spread(packages, other):
    scaled, plain = packages
    a, b = _run(scaled, **other), _run(plain, **other)
    np.testing.assert_array_equal(a.variance, b.variance)
    assert "variance_scale" not in a.settings


def test_the_provenance_records_the_scale_only_where_it_was_applied(packages):
    scaled, plain = packages
    assert _run(scaled).settings["variance_scale"] == SCALE
    assert "variance_scale" not in _run(plain).settings
    assert PredictSettings(steps=3).resolve(scaled.manifest)["variance_scale"] == SCALE
    assert PredictSettings(steps=4).resolve(scaled.manifest)["variance_scale"] is None


def test_the_trust_features_see_the_scaled_variance(packages):
    from labelfree_app.core.trust import output_features

    scaled, plain = packages
    a, b = _run(scaled), _run(plain)
    if a.trust is None or "explained_r" not in a.trust.features:
        pytest.skip("no trust estimate for this model")
    expected = output_features(a.prediction[0, 0], a.variance[0, 0])["explained_r"]
    assert a.trust.features["explained_r"] == pytest.approx(expected, rel=1e-4)
    assert a.trust.features["explained_r"] < b.trust.features["explained_r"]  # more spread: the mean explains less


def test_ddim_eta_must_match_too():
    section = {"variance_scale": {**FITTED, "sampler": "ddim", "eta": 0.0}}
    assert variance_scale(section, steps=3, sampler="ddim", eta=0.0) == SCALE
    assert variance_scale(section, steps=3, sampler="ddim", eta=1.0) is None
    assert variance_scale({}, steps=3, sampler="ddim", eta=0.0) is None
    assert variance_scale(None, steps=3, sampler="ddim", eta=0.0) is None


def test_the_manifest_round_trips_the_scale_and_an_old_manifest_stays_as_it_was(tmp_path):
    data = diffusion_manifest(KWARGS, "m", sampler="dpmpp2m", variance_scale={**FITTED, "figures": {"holds": True}})
    data["weights"] = {"sha256": "0" * 64}
    manifest = Manifest.from_dict(data)
    assert manifest.diffusion.variance_scale == VarianceScale(steps=3, sampler="dpmpp2m", scale=SCALE, eta=0.0,
                                                              reference_steps=6, fitted_on="synthetic",
                                                              figures={"holds": True})
    assert Manifest.from_dict(manifest.to_dict()) == manifest
    assert manifest.to_dict()["diffusion"]["variance_scale"]["scale"] == SCALE

    old = {**data, "diffusion": {k: v for k, v in data["diffusion"].items() if k != "variance_scale"}}
    read = Manifest.from_dict(old)
    assert read.diffusion.variance_scale is None
    assert "variance_scale" not in read.to_dict()["diffusion"]  # re-saved, it reads as before
    assert read.to_dict()["diffusion"] == old["diffusion"]


def test_a_saved_package_keeps_its_scale(tmp_path, packages):
    scaled, _ = packages
    again = load_package(save_package(tmp_path / "copy", scaled.manifest.to_dict(), scaled.state_dict()))
    assert again.manifest.diffusion.variance_scale.scale == SCALE
    written = json.loads((tmp_path / "copy" / "manifest.json").read_text())
    assert written["diffusion"]["variance_scale"]["steps"] == 3


@pytest.mark.parametrize("bad, field, words", [
    ({"scale": -1.0}, "diffusion.variance_scale.scale", "between 0.1 and 10"),
    ({"scale": 0}, "diffusion.variance_scale.scale", "between 0.1 and 10"),
    ({"scale": math.inf}, "diffusion.variance_scale.scale", "between 0.1 and 10"),
    ({"scale": math.nan}, "diffusion.variance_scale.scale", "between 0.1 and 10"),
    ({"scale": "1.2"}, "diffusion.variance_scale.scale", "must be of type"),
    ({"scale": True}, "diffusion.variance_scale.scale", "must be of type"),
    ({"steps": 2000}, "diffusion.variance_scale.steps", "between 1 and 1000"),
    ({"sampler": "euler"}, "diffusion.variance_scale.sampler", "must be one of"),
    ({"eta": 2.0}, "diffusion.variance_scale.eta", "between 0 and 1"),
])
def test_a_bad_variance_scale_is_refused_naming_the_field(bad, field, words):
    data = diffusion_manifest(KWARGS, "m", variance_scale={**FITTED, **bad})
    data["weights"] = {"sha256": "0" * 64}
    with pytest.raises(ManifestError) as caught:
        Manifest.from_dict(data, source="m/manifest.json")
    assert caught.value.field == field
    assert field in str(caught.value) and words in str(caught.value) and "m/manifest.json" in str(caught.value)


def test_a_variance_scale_without_its_scale_is_refused():
    data = diffusion_manifest(KWARGS, "m", variance_scale={"steps": 3, "sampler": "ddim"})
    data["weights"] = {"sha256": "0" * 64}
    with pytest.raises(ManifestError, match="missing the required field 'diffusion.variance_scale.scale'"):
        Manifest.from_dict(data)


def test_every_bundled_diffusion_manifest_reads_and_its_scale_is_in_range():
    root = Path(__file__).resolve().parents[2] / "resources" / "models"
    for folder in sorted(root.glob("*-diffusion")):
        manifest = load_package(folder).manifest
        fitted = manifest.diffusion.variance_scale
        if fitted is not None:
            assert 0.1 <= fitted.scale <= 10 and fitted.reference_steps > fitted.steps
