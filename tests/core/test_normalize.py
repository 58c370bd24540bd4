from __future__ import annotations

import json

import numpy as np
import pytest

from labelfree_app.core.normalize import Normalizer, fit_normalizer, strided_sample
from labelfree_app.errors import EmptyImageError, ManifestError


@pytest.fixture()
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.gamma(2.0, 300.0, size=(3, 64, 80)) + 100).astype(np.uint16)


def test_zscore_gives_zero_mean_unit_std_over_the_whole_image(image: np.ndarray) -> None:
    y = fit_normalizer(image, "zscore").apply(image)
    assert y.dtype == np.float32 and y.shape == image.shape
    assert abs(float(y.astype(np.float64).mean())) < 1e-5
    assert abs(float(y.astype(np.float64).std()) - 1.0) < 1e-5


def test_zscore_statistics_match_numpy_in_float64(image: np.ndarray) -> None:
    norm = fit_normalizer(image, "zscore")
    assert norm.params["mean"] == pytest.approx(image.astype(np.float64).mean(), rel=1e-12)
    assert norm.params["std"] == pytest.approx(image.astype(np.float64).std(), rel=1e-12)


def test_zscore_of_a_non_contiguous_array_bigger_than_a_chunk_is_exact() -> None:
    rng = np.random.default_rng(1)
    big = rng.normal(5e3, 3.0, size=(2, 1200, 1100)).astype(np.float32)[:, ::-1, 1:]
    norm = fit_normalizer(big, "zscore")
    assert norm.params["mean"] == pytest.approx(big.astype(np.float64).mean(), rel=1e-12)
    assert norm.params["std"] == pytest.approx(big.astype(np.float64).std(), rel=1e-9)


def test_percentile_maps_the_chosen_percentiles_to_zero_and_one(image: np.ndarray) -> None:
    norm = fit_normalizer(image, "percentile", low=2.0, high=98.0)
    lo, hi = np.percentile(image, [2.0, 98.0])
    assert norm.params["low_value"] == pytest.approx(lo)
    assert norm.params["high_value"] == pytest.approx(hi)
    assert norm.params["low"] == 2.0 and norm.params["high"] == 98.0
    y = norm.apply(np.array([lo, hi]))
    np.testing.assert_allclose(y, [0.0, 1.0], atol=1e-6)


def test_percentile_default_is_one_and_99_8(image: np.ndarray) -> None:
    norm = fit_normalizer(image, "percentile")
    assert norm.percentiles == (1.0, 99.8)
    assert norm.params["high_value"] == pytest.approx(np.percentile(image, 99.8))


def test_percentile_of_a_large_image_uses_a_bounded_deterministic_sample() -> None:
    rng = np.random.default_rng(2)
    big = rng.normal(1000.0, 50.0, size=(1, 1500, 1500)).astype(np.float32)
    fitted = [fit_normalizer(big, "percentile", sample_limit=100_000) for _ in range(2)]
    assert fitted[0] == fitted[1]
    exact = np.percentile(big, [1.0, 99.8])
    assert fitted[0].params["low_value"] == pytest.approx(exact[0], rel=2e-3)
    assert fitted[0].params["high_value"] == pytest.approx(exact[1], rel=2e-3)


def test_strided_sample_respects_the_limit_for_contiguous_and_strided_arrays() -> None:
    a = np.arange(1000 * 999, dtype=np.float32).reshape(1000, 999)
    assert strided_sample(a, 5000).size <= 5000
    assert strided_sample(a[:, ::2].T, 5000).size <= 5000
    assert strided_sample(a[:10, :10], 5000).size == 100


def test_minmax_maps_the_extremes_to_zero_and_one(image: np.ndarray) -> None:
    y = fit_normalizer(image, "minmax").apply(image)
    assert float(y.min()) == pytest.approx(0.0, abs=1e-7)
    assert float(y.max()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("method", ["zscore", "percentile", "minmax"])
def test_invert_undoes_apply(image: np.ndarray, method: str) -> None:
    norm = fit_normalizer(image, method)
    back = norm.invert(norm.apply(image))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, image.astype(np.float32), rtol=1e-5, atol=1e-2)


@pytest.mark.parametrize("method", ["zscore", "percentile", "minmax"])
def test_constant_image_normalizes_without_dividing_by_zero(method: str) -> None:
    constant = np.full((1, 16, 16), 437.0, dtype=np.float32)
    norm = fit_normalizer(constant, method)
    with np.errstate(all="raise"):
        y = norm.apply(constant)
        back = norm.invert(y)
    assert np.isfinite(y).all() and np.ptp(y) == 0.0
    np.testing.assert_array_equal(back, constant)


def test_non_finite_pixels_are_ignored_when_fitting() -> None:
    data = np.array([[1.0, 2.0, np.nan], [3.0, np.inf, 4.0]], dtype=np.float32)
    norm = fit_normalizer(data, "zscore")
    finite = np.array([1.0, 2.0, 3.0, 4.0])
    assert norm.params["mean"] == pytest.approx(finite.mean())
    assert norm.params["std"] == pytest.approx(finite.std())
    assert fit_normalizer(data, "minmax").params == {"low_value": 1.0, "high_value": 4.0}


@pytest.mark.parametrize("method", ["zscore", "percentile", "minmax"])
def test_an_image_without_finite_pixels_is_a_user_error(method: str) -> None:
    with pytest.raises(EmptyImageError):
        fit_normalizer(np.full((4, 4), np.nan, dtype=np.float32), method)


@pytest.mark.parametrize("method", ["zscore", "percentile", "minmax"])
def test_fitted_normalizer_round_trips_through_json(image: np.ndarray, method: str) -> None:
    norm = fit_normalizer(image, method)
    again = Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert again == norm and again.is_fitted
    np.testing.assert_array_equal(again.apply(image), norm.apply(image))


def test_unfitted_normalizer_keeps_its_options_and_fits_with_them(image: np.ndarray) -> None:
    spec = Normalizer.unfitted("percentile", low=5.0, high=95.0)
    assert not spec.is_fitted
    assert spec.to_dict() == {"method": "percentile", "params": {"low": 5.0, "high": 95.0}}
    fitted = spec.fit(image)
    assert fitted.is_fitted and fitted.percentiles == (5.0, 95.0)
    assert fitted.params["low_value"] == pytest.approx(np.percentile(image, 5.0))


def test_applying_an_unfitted_normalizer_is_refused() -> None:
    with pytest.raises(ValueError, match="not fitted"):
        Normalizer.unfitted("zscore").apply(np.ones(3))


def test_from_dict_names_the_bad_field() -> None:
    with pytest.raises(ManifestError) as bad_method:
        Normalizer.from_dict({"method": "quantile", "params": {}}, field_name="normalization.input")
    assert bad_method.value.field == "normalization.input.method"
    with pytest.raises(ManifestError) as bad_value:
        Normalizer.from_dict({"method": "zscore", "params": {"mean": "a lot", "std": 1.0}})
    assert bad_value.value.field == "normalization.params.mean"
    with pytest.raises(ManifestError) as bad_key:
        Normalizer.from_dict({"method": "zscore", "params": {"gain": 2.0}})
    assert bad_key.value.field == "normalization.params"
    with pytest.raises(ManifestError):
        Normalizer.from_dict({"method": "percentile", "params": {"low": 99.0, "high": 1.0}})


def test_normalizers_are_hashable_values(image: np.ndarray) -> None:
    a, b = fit_normalizer(image, "minmax"), fit_normalizer(image.copy(), "minmax")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
