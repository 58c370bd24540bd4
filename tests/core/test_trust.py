"""The trust estimate: input profiles, the fitted model, the engine's features and map."""

from __future__ import annotations

import numpy as np
import pytest

from labelfree_app.core import trust_recorder
from labelfree_app.core.engine import PredictionEngine
from labelfree_app.core.trust import (InputProfile, TrustEstimate, TrustModel, explain, patch_statistics,
                                      prediction_features, upsample_map)
from labelfree_app.core.trust_recorder import TrustRecorder, calibration_key
from labelfree_app.io.image import Image
from tests.factories import make_diffusion_package, make_unet_package


def smooth_field(seed: int, shape: tuple[int, int] = (256, 256)) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    return gaussian_filter(rng.normal(size=shape), 4).astype(np.float32) * 10 + 0.5


def test_familiarity_is_high_for_inputs_like_the_training_ones_and_low_for_others() -> None:
    profile = InputProfile.fit([smooth_field(s) for s in range(4)])
    alike = profile.familiarity(smooth_field(10))
    noise = profile.familiarity(np.random.default_rng(1).normal(size=(256, 256)).astype(np.float32) * 5)
    assert alike.shape == (8, 8)
    assert 0.2 < float(alike.mean()) <= 1.0
    assert float(noise.mean()) < 0.05
    assert float(noise.max()) <= 1.0 and float(noise.min()) >= 0.0


def test_input_profile_round_trips_and_refuses_bad_data() -> None:
    profile = InputProfile.fit([smooth_field(0)])
    again = InputProfile.from_dict(profile.to_dict())
    assert np.allclose(again.familiarity(smooth_field(3)), profile.familiarity(smooth_field(3)))
    with pytest.raises(ValueError):
        InputProfile.from_dict({"mean": [0, 0], "inv_cov": [[1, 0], [0, 1]], "distance_quantiles": [0, 1]})
    with pytest.raises(ValueError):
        InputProfile.from_dict({"mean": [0, 0, float("nan")], "inv_cov": np.eye(3).tolist(),
                                "distance_quantiles": [0, 1]})


def test_patch_statistics_average_channels_of_a_stack() -> None:
    stack = np.stack([smooth_field(0), smooth_field(0)])
    assert np.allclose(patch_statistics(stack), patch_statistics(stack[0]), atol=1e-5)


def test_a_hazy_prediction_has_a_smaller_spread_and_separation_than_a_sharp_one() -> None:
    yy, xx = np.mgrid[:128, :128]
    sharp = np.where(((yy % 32) - 16) ** 2 + ((xx % 32) - 16) ** 2 < 50, 2.5, -0.4).astype(np.float32)
    haze = (0.15 * sharp + 0.05 * np.random.default_rng(0).normal(size=sharp.shape)).astype(np.float32)
    x = smooth_field(0, (128, 128))[None]
    f_sharp, _ = prediction_features(sharp, x, None)
    f_haze, _ = prediction_features(haze, x, None)
    assert f_sharp["pred_sd"] > 5 * f_haze["pred_sd"]
    assert f_sharp["pred_sep"] > f_haze["pred_sep"]
    var = np.full_like(sharp, 4.0)
    with_var, _ = prediction_features(sharp, x, None, var)
    assert 0.0 < with_var["explained_share"] < 1.0


def test_trust_model_fits_a_linear_relation_and_labels_levels() -> None:
    rng = np.random.default_rng(0)
    rows = [{"a": float(v), "b": float(rng.normal())} for v in rng.uniform(0, 1, 60)]
    actual = [0.1 + 0.8 * row["a"] for row in rows]
    model = TrustModel.fit(rows, actual, ("a", "b"), ridge=1e-6)
    assert model.expected_r({"a": 0.5, "b": 0.0}) == pytest.approx(0.5, abs=0.02)
    assert model.estimate({"a": 1.0, "b": 0.0}).level == "good"
    assert model.estimate({"a": 0.0, "b": 0.0}).level == "not trustworthy"
    low = model.estimate({"a": 0.0, "b": 0.0})
    assert low.low <= low.expected_r <= low.high
    assert not low.trustworthy and "fine-tune" in low.advice
    again = TrustModel.from_dict(model.to_dict())
    assert again.expected_r({"a": 0.3, "b": 1.0}) == pytest.approx(model.expected_r({"a": 0.3, "b": 1.0}))
    with pytest.raises(ValueError):
        TrustModel.from_dict({**model.to_dict(), "coef": [1.0]})


def test_estimate_round_trips_and_reads_as_a_sentence() -> None:
    estimate = TrustEstimate(0.42, 0.3, 0.55, "not trustworthy", "Why: it is hazy.", "Stain a few fields.")
    assert TrustEstimate.from_dict(estimate.to_dict()) == estimate
    assert estimate.summary() == "expected r 0.42 (0.30-0.55): not trustworthy"
    assert estimate.sentence().startswith("Expected r 0.42")
    reason, _ = explain("not trustworthy", {"pred_sd": 0.1, "unfamiliar_share": 0.6})
    assert "60%" in reason and "hazy" in reason


def test_upsample_map_repeats_patches_over_the_plane() -> None:
    grid = np.arange(6, dtype=np.float32).reshape(2, 3)
    full = upsample_map(grid, (70, 100))
    assert full.shape == (70, 100)
    assert full[0, 0] == 0 and full[-1, -1] == 5 and full[69, 0] == 3


def unet_calibration() -> dict[str, TrustModel]:
    rng = np.random.default_rng(0)
    names = ("pred_sd", "calibrated_r")
    rows = [{"pred_sd": float(a), "calibrated_r": float(b)} for a, b in rng.uniform(0, 1, (40, 2))]
    model = TrustModel.fit(rows, [0.5 * r["pred_sd"] + 0.5 * r["calibrated_r"] for r in rows], names)
    diffusion_rows = [{"pred_sd": r["pred_sd"], "explained_share": r["calibrated_r"]} for r in rows]
    diffusion = TrustModel.fit(diffusion_rows, [0.5 * r["pred_sd"] + 0.5 * r["calibrated_r"] for r in rows],
                               ("pred_sd", "explained_share"))
    return {"unet": model, "unet+profile": model, "diffusion": diffusion}


def test_engine_gives_a_unet_prediction_an_estimate_and_a_map(tmp_path, monkeypatch) -> None:
    package = make_unet_package(tmp_path)
    manifest = package.manifest.to_dict()
    profile = InputProfile.fit([smooth_field(0, (96, 128))])
    engine = PredictionEngine(package, device="cpu")
    engine.manifest["trust"] = {"input_profile": profile.to_dict()}
    monkeypatch.setattr(trust_recorder, "bundled_calibration", lambda path=None: unet_calibration())
    engine._trust = TrustRecorder(engine.manifest)
    image = Image.from_array(smooth_field(1, (96, 128))[None, None], "CZYX")
    result = engine.predict(image)
    assert isinstance(result.trust, TrustEstimate)
    assert {"pred_sd", "calibrated_r", "familiar_mean"} <= set(result.trust.features)
    assert result.trust_map is not None and result.trust_map.shape == (1, 1, 96, 128)
    assert 0.0 <= float(result.trust_map.min()) <= float(result.trust_map.max()) <= 1.0
    assert manifest["kind"] == "unet"


def test_engine_without_calibration_or_for_3d_gives_no_estimate(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(trust_recorder, "bundled_calibration", lambda path=None: {})
    engine = PredictionEngine(make_unet_package(tmp_path), device="cpu")
    result = engine.predict(Image.from_array(smooth_field(1, (64, 64))[None, None], "CZYX"))
    assert result.trust is None and result.trust_map is None
    monkeypatch.setattr(trust_recorder, "bundled_calibration", lambda path=None: unet_calibration())
    engine3d = PredictionEngine(make_unet_package(tmp_path, dims=3, model_id="u3"), device="cpu")
    volume = np.stack([smooth_field(s, (32, 32)) for s in range(8)])[None]
    assert engine3d.predict(Image.from_array(volume, "CZYX")).trust is None


def test_diffusion_runs_get_the_sample_agreement_feature(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(trust_recorder, "bundled_calibration", lambda path=None: unet_calibration())
    engine = PredictionEngine(make_diffusion_package(tmp_path), device="cpu")
    result = engine.predict(Image.from_array(smooth_field(2, (64, 64))[None, None], "CZYX"))
    assert {"explained_share", "explained_r"} <= set(engine._trust.features)
    assert result.trust is not None


def test_calibration_keys_name_the_family_and_the_profile() -> None:
    assert calibration_key("unet", True) == "unet+profile"
    assert calibration_key("unet", False) == "unet"
    assert calibration_key("diffusion", True) == "diffusion+profile"


def test_a_streamed_plane_gets_the_features_of_a_whole_prediction(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(trust_recorder, "bundled_calibration", lambda path=None: unet_calibration())
    engine = PredictionEngine(make_unet_package(tmp_path), device="cpu")
    engine.manifest["trust"] = {"input_profile": InputProfile.fit([smooth_field(0, (200, 220))]).to_dict()}
    engine._trust = TrustRecorder(engine.manifest)
    image = Image.from_array(smooth_field(4, (300, 280))[None, None], "CZYX")
    whole = engine.predict(image)
    streamed = _streamed(engine, image)
    assert streamed.trust is not None
    a, b = whole.trust.features, streamed.trust.features
    assert set(a) == set(b)
    assert b["pred_sd"] == pytest.approx(a["pred_sd"], rel=0.05)
    assert b["calibrated_r"] == pytest.approx(a["calibrated_r"], abs=0.02)
    assert b["familiar_mean"] == pytest.approx(a["familiar_mean"], abs=0.05)
    assert streamed.trust.expected_r == pytest.approx(whole.trust.expected_r, abs=0.03)


def _streamed(engine: PredictionEngine, image: Image, settings=None):
    class Sink:
        def begin(self, *args) -> None: ...

        def write(self, *args) -> None: ...

    run = engine.stream(image, settings, Sink())
    while True:
        try:
            next(run)
        except StopIteration as stop:
            return stop.value


def test_a_streamed_stack_gets_the_trust_map_of_a_whole_prediction_up_to_the_cap(tmp_path, monkeypatch) -> None:
    from labelfree_app.core.engine import PredictSettings

    monkeypatch.setattr(trust_recorder, "bundled_calibration", lambda path=None: unet_calibration())
    engine = PredictionEngine(make_unet_package(tmp_path), device="cpu")
    engine.manifest["trust"] = {"input_profile": InputProfile.fit([smooth_field(0, (200, 220))]).to_dict()}
    engine._trust = TrustRecorder(engine.manifest)
    pixels = np.stack([smooth_field(5, (230, 170)), np.random.default_rng(2).normal(size=(230, 170)) * 3])
    image = Image.from_array(pixels[None].astype(np.float32), "CZYX")
    settings = PredictSettings(tile_shape=(64, 64))  # many bands, which meet inside rows of patches
    whole = engine.predict(image, settings)
    streamed = _streamed(engine, image, settings)
    assert whole.trust_map is not None and streamed.trust_map is not None
    assert streamed.trust_map.shape == whole.trust_map.shape == (1, 2, 230, 170)
    assert float(whole.trust_map.min()) < 0.1 < 0.5 < float(whole.trust_map.max())  # a map, not a constant
    np.testing.assert_allclose(streamed.trust_map, whole.trust_map, atol=1e-5)
    assert streamed.trust.features["familiar_mean"] == pytest.approx(whole.trust.features["familiar_mean"], abs=1e-5)
    assert streamed.trust.features["input_sd"] == pytest.approx(whole.trust.features["input_sd"], rel=1e-4)
    monkeypatch.setattr(trust_recorder, "STREAMED_MAP_MAX_PIXELS", 230 * 170 * 2 - 1)  # one plane fits, not two
    capped = _streamed(engine, image, settings)
    assert capped.trust_map is None and capped.trust is not None  # the estimate stays
    assert capped.trust.features["familiar_mean"] == pytest.approx(streamed.trust.features["familiar_mean"])


def test_a_tta_run_falls_back_to_the_plain_unet_calibration(tmp_path, monkeypatch) -> None:
    from labelfree_app.core.settings import PredictSettings

    monkeypatch.setattr(trust_recorder, "bundled_calibration", lambda path=None: unet_calibration())
    engine = PredictionEngine(make_unet_package(tmp_path), device="cpu")
    result = engine.predict(Image.from_array(smooth_field(1, (64, 64))[None, None], "CZYX"), PredictSettings(tta=True))
    assert result.variance is not None and result.trust is not None


def test_a_doubtful_unet_run_without_tta_is_told_to_try_it_and_one_with_variance_is_not() -> None:
    plain = {"pred_sd": 0.3, "pred_mean": 0.1, "unfamiliar_share": 0.0}
    for level in ("uncertain", "not trustworthy"):
        assert "Test-time augmentation" in explain(level, plain)[1]
        assert "Test-time augmentation" not in explain(level, {**plain, "explained_share": 0.5})[1]
    assert "Test-time augmentation" not in explain("good", plain)[1]
