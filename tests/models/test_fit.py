"""Which models fit an image, and the default the CLI, batch and the GUI pick for it."""

from __future__ import annotations

import pytest

from labelfree_app.errors import ModelNotFoundError
from labelfree_app.models.fit import (InputFacts, best_fitting, best_start, default_for_image, fit_problem,
                                      start_problem)
from labelfree_app.models.registry import ModelRegistry
from tests.factories import make_unet_package


@pytest.fixture()
def models(tmp_path):
    stack = make_unet_package(tmp_path, in_channels=13, z_as_channels=True, model_id="stack-model",
                              metrics={"pearson_r": 0.8})
    plane = make_unet_package(tmp_path, model_id="plane-model", metrics={"pearson_r": 0.6})
    demo = make_unet_package(tmp_path, model_id="demo-model", demo=True, metrics={"pearson_r": 0.9})
    return {"stack": stack, "plane": plane, "demo": demo}


def test_a_z_stack_model_does_not_fit_a_single_plane_and_says_why(models):
    problem = fit_problem(models["stack"].manifest, InputFacts(planes=1))
    assert problem == "takes a 13-plane z-stack; this image is a single plane"
    assert fit_problem(models["stack"].manifest, InputFacts(planes=13)) is None
    assert fit_problem(models["plane"].manifest, InputFacts(planes=13)) is None  # plane by plane


def test_the_best_fitting_model_uses_the_whole_stack_and_real_models_come_before_demos(models):
    packages = list(models.values())
    assert best_fitting(packages, InputFacts(planes=13)).manifest.id == "stack-model"
    assert best_fitting(packages, InputFacts(planes=1)).manifest.id == "plane-model"
    assert best_fitting(packages, InputFacts(planes=1), preferred=["stack-model", "demo-model"]).manifest.id \
        == "demo-model"  # a stored default that fits wins; one that does not fit is passed over


def test_no_fitting_model_is_one_sentence(models):
    with pytest.raises(ModelNotFoundError, match="No installed model takes a single plane"):
        best_fitting([models["stack"]], InputFacts(planes=1))


def test_the_registry_default_depends_on_the_image(tmp_path, models):
    registry = ModelRegistry(bundled_dir=tmp_path, user_dir=tmp_path / "user")
    assert registry.default_for(facts=InputFacts(planes=13)).id == "stack-model"
    assert registry.default_for(facts=InputFacts(planes=1)).id == "plane-model"
    assert registry.default_for().id == "plane-model"  # no image: a single plane is assumed


def test_the_windows_default_ignores_a_single_plane_default_for_a_stack_but_keeps_a_stored_one(tmp_path, models):
    registry = ModelRegistry(bundled_dir=tmp_path, user_dir=tmp_path / "user")
    entries = registry.list()
    assert next(e for e in entries if e.id == "plane-model").default  # its target's default for one plane
    assert default_for_image(entries, InputFacts(planes=13)).id == "stack-model"  # ... but a stack gets the stack model
    assert default_for_image(entries, InputFacts(planes=1)).id == "plane-model"
    assert default_for_image([e for e in entries if e.id == "stack-model"], InputFacts(planes=1)) is None
    registry.set_default(entries[0].target, "demo-model")  # someone chose it: it comes first where it fits
    entries = registry.list()
    assert next(e for e in entries if e.id == "demo-model").stored_default
    assert default_for_image(entries, InputFacts(planes=13)).id == "demo-model"


def test_fine_tuning_starts_only_from_models_that_fit_the_pairs(models):
    assert start_problem(models["plane"].manifest, 13, "unet") is None  # spread over the planes
    assert start_problem(models["stack"].manifest, 1, "unet") == "takes 13 input plane(s); these inputs have 1"
    assert "not a diffusion model" in start_problem(models["plane"].manifest, 1, "diffusion")
    assert best_start(list(models.values()), 1, "unet").manifest.id == "plane-model"
    assert best_start(list(models.values()), 13, "unet").manifest.id == "stack-model"
    assert best_start(list(models.values()), 1, "diffusion") is None
