from __future__ import annotations

import numpy as np
import pytest
import torch

from labelfree_app.core.welford import Welford


def samples(n: int = 23, offset: float = 1e4, noise: float = 1e-2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return offset + rng.normal(0.0, noise, size=(n, 3, 7, 5))


def test_one_at_a_time_matches_numpy_with_a_large_offset() -> None:
    xs = samples()
    stats = Welford()
    for x in xs:
        stats.update(x)
    assert stats.count == len(xs)
    np.testing.assert_allclose(stats.mean, xs.mean(axis=0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(stats.variance, xs.var(axis=0), rtol=1e-8)
    np.testing.assert_allclose(stats.sample_variance, xs.var(axis=0, ddof=1), rtol=1e-8)
    np.testing.assert_allclose(stats.std, xs.std(axis=0), rtol=1e-8)


def test_naive_sum_of_squares_would_fail_where_welford_does_not() -> None:
    xs = samples(offset=1e8, noise=1e-1)
    naive = (xs**2).mean(axis=0) - xs.mean(axis=0) ** 2
    stats = Welford()
    stats.update_batch(xs)
    truth = xs.var(axis=0)
    assert np.abs(naive / truth - 1).max() > 0.01
    np.testing.assert_allclose(stats.variance, truth, rtol=1e-6)


def test_batches_single_samples_and_merges_agree() -> None:
    xs = samples(n=31, seed=1)
    stats = Welford()
    stats.update_batch(xs[:4])
    for x in xs[4:9]:
        stats.update(x)
    stats.update_batch(xs[9:9])  # an empty batch changes nothing
    other = Welford()
    other.update_batch(xs[9:20])
    other.update_batch(xs[20:])
    stats.merge(other)
    assert stats.count == 31
    np.testing.assert_allclose(stats.mean, xs.mean(axis=0), atol=1e-9)
    np.testing.assert_allclose(stats.variance, xs.var(axis=0), rtol=1e-8)


def test_float32_accumulator_is_accurate_for_moderate_offsets() -> None:
    xs = samples(n=40, offset=100.0, noise=1.0, seed=2).astype(np.float32)
    stats = Welford(np.float32)
    stats.update_batch(xs[:10])
    for x in xs[10:]:
        stats.update(x)
    truth = xs.astype(np.float64)
    assert stats.mean.dtype == np.float32
    np.testing.assert_allclose(stats.mean, truth.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats.variance, truth.var(axis=0), rtol=1e-3)


def test_single_sample_has_zero_variance_and_no_sample_variance() -> None:
    stats = Welford()
    stats.update(np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(stats.variance, np.zeros((2, 3)))
    np.testing.assert_array_equal(stats.mean, np.arange(6.0).reshape(2, 3))
    with pytest.raises(ValueError, match="at least 2"):
        _ = stats.sample_variance


def test_empty_accumulator_and_shape_changes_are_refused() -> None:
    stats = Welford()
    with pytest.raises(ValueError, match="no samples"):
        _ = stats.mean
    stats.update(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="shape"):
        stats.update(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="shape"):
        stats.update_batch(np.zeros((4, 2, 2)))


def test_returned_mean_is_a_copy_and_the_input_is_not_modified() -> None:
    x = np.ones((2, 2))
    stats = Welford()
    stats.update(x)
    stats.update(x * 3)
    mean = stats.mean
    mean[:] = -1
    np.testing.assert_array_equal(stats.mean, np.full((2, 2), 2.0))
    np.testing.assert_array_equal(x, np.ones((2, 2)))


def test_torch_tensors_are_accepted() -> None:
    xs = torch.randn(5, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    stats = Welford()
    stats.update_batch(xs[:2])
    stats.update(xs[2])
    stats.update_batch(xs[3:])
    np.testing.assert_allclose(stats.variance, xs.double().var(dim=0, unbiased=False).numpy(), rtol=1e-6)
