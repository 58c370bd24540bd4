from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.filters import threshold_otsu
from skimage.metrics import structural_similarity

from labelfree_app.core.metrics import difference_maps, nrmse, otsu_mask, pearson_r, ssim


@pytest.fixture()
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    target = rng.gamma(2.0, 100.0, size=(64, 72)).astype(np.float32)
    pred = (0.8 * target + rng.normal(0.0, 30.0, size=target.shape)).astype(np.float32)
    return pred, target


def test_pearson_r_matches_numpy(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, target = pair
    expected = np.corrcoef(pred.ravel().astype(np.float64), target.ravel().astype(np.float64))[0, 1]
    assert pearson_r(pred, target) == pytest.approx(expected, abs=1e-12)


def test_pearson_r_is_one_for_an_affine_copy_and_minus_one_when_inverted(pair) -> None:
    _, target = pair
    assert pearson_r(3 * target + 7, target) == pytest.approx(1.0, abs=1e-9)
    assert pearson_r(-target, target) == pytest.approx(-1.0, abs=1e-9)


def test_pearson_r_accumulates_in_float64_for_large_offsets() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=200_000)
    a = (1e4 + base).astype(np.float32)
    b = (1e4 + base + rng.normal(scale=0.5, size=base.size)).astype(np.float32)
    expected = np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1]
    assert pearson_r(a, b) == pytest.approx(expected, abs=1e-9)


def test_pearson_r_honours_the_mask(pair) -> None:
    pred, target = pair
    mask = np.zeros(target.shape, dtype=bool)
    mask[10:40, 5:50] = True
    expected = np.corrcoef(pred[mask].astype(np.float64), target[mask].astype(np.float64))[0, 1]
    assert pearson_r(pred, target, mask=mask) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="mask"):
        pearson_r(pred, target, mask=mask[:-1])


def test_pearson_r_of_a_constant_image_is_nan() -> None:
    assert math.isnan(pearson_r(np.ones((8, 8)), np.arange(64.0).reshape(8, 8)))


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="shape"):
        pearson_r(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="shape"):
        difference_maps(np.zeros((4, 4)), np.zeros((5, 4)))


def test_nrmse_is_rmse_over_the_target_range(pair) -> None:
    pred, target = pair
    t, p = target.astype(np.float64), pred.astype(np.float64)
    expected = math.sqrt(np.mean((t - p) ** 2)) / (t.max() - t.min())
    assert nrmse(pred, target) == pytest.approx(expected, rel=1e-9)
    assert nrmse(target, target) == 0.0
    assert nrmse(pred, target, "euclidean") == pytest.approx(
        math.sqrt(np.mean((t - p) ** 2)) / math.sqrt(np.mean(t * t)), rel=1e-9)


def test_nrmse_of_a_constant_target_does_not_divide_by_zero() -> None:
    flat = np.full((8, 8), 5.0)
    assert nrmse(flat, flat) == 0.0
    assert nrmse(flat + 1, flat) == math.inf


def test_ssim_uses_the_target_data_range(pair) -> None:
    pred, target = pair
    t, p = target.astype(np.float64), pred.astype(np.float64)
    expected = structural_similarity(t, p, data_range=t.max() - t.min())
    assert ssim(pred, target) == pytest.approx(expected, rel=1e-9)
    assert ssim(target, target) == pytest.approx(1.0)
    assert ssim(pred, target) < 0.99


def test_ssim_handles_thin_3d_stacks_and_singleton_axes() -> None:
    rng = np.random.default_rng(3)
    stack = rng.random((1, 5, 32, 32))
    assert ssim(stack, stack) == pytest.approx(1.0)
    assert ssim(stack + rng.normal(0, 0.2, stack.shape), stack) < 0.9


def test_otsu_mask_separates_bright_objects_from_background() -> None:
    rng = np.random.default_rng(4)
    image = rng.normal(100.0, 5.0, size=(64, 64))
    image[20:40, 20:40] += 400.0
    image[0, 0] = np.nan
    mask = otsu_mask(image)
    assert mask.dtype == bool and mask.shape == image.shape
    assert mask[20:40, 20:40].all() and 400 <= mask.sum() < 420  # Otsu leans to the bigger class
    np.testing.assert_array_equal(mask, np.nan_to_num(image) > threshold_otsu(image[np.isfinite(image)]))


def test_otsu_mask_of_a_constant_image_is_empty() -> None:
    assert not otsu_mask(np.full((8, 8), 3.0)).any()


def test_difference_maps_are_signed_and_absolute(pair) -> None:
    pred, target = pair
    maps = difference_maps(target, pred)
    assert set(maps) == {"observed_minus_predicted", "predicted_minus_observed", "absolute"}
    np.testing.assert_allclose(maps["observed_minus_predicted"], target - pred, rtol=1e-6)
    np.testing.assert_array_equal(maps["predicted_minus_observed"], -maps["observed_minus_predicted"])
    np.testing.assert_array_equal(maps["absolute"], np.abs(maps["observed_minus_predicted"]))
    assert all(m.dtype == np.float32 for m in maps.values())
