"""Microscope augmentations: input-only changes, zooms, and source weights in patch drawing."""

from __future__ import annotations

import numpy as np

from labelfree_app.training.augment import augment_input, zoom_window
from labelfree_app.training.config import AugmentSettings, PairSpec
from labelfree_app.training.datasets import LoadedPair
from labelfree_app.training.sampling import PatchSampler


def _pair(value: float, shape=(96, 96), name="a") -> LoadedPair:
    rng = np.random.default_rng(int(value))
    x = rng.normal(size=(1, *shape)).astype(np.float32)
    return LoadedPair(PairSpec(name, f"{name}.tif"), x, np.full((1, *shape), value, np.float32), False)


def test_no_augmentation_settings_leave_the_input_alone():
    x = np.random.default_rng(0).normal(size=(1, 32, 32)).astype(np.float32)
    assert np.array_equal(augment_input(x, np.random.default_rng(1), AugmentSettings()), x)


def test_gamma_blur_and_noise_change_the_input_but_keep_its_shape():
    x = np.random.default_rng(0).normal(size=(1, 32, 32)).astype(np.float32)
    out = augment_input(x, np.random.default_rng(1), AugmentSettings(gamma=0.5, blur_sigma=2.0, noise=0.3))
    assert out.shape == x.shape and out.dtype == np.float32 and not np.allclose(out, x)


def test_zoom_window_resizes_y_and_x_only():
    window = np.ones((3, 50, 70), np.float32)
    out = zoom_window(window, (32, 32))
    assert out.shape == (3, 32, 32) and np.allclose(out, 1.0)


def test_zoomed_patches_come_out_at_the_patch_shape_from_inside_the_image():
    pairs = [_pair(1.0)]
    sampler = PatchSampler(lambda i: pairs[i], 1, (32, 32), augmentation=AugmentSettings(scale=(0.5, 2.0)),
                           rng=np.random.default_rng(0))
    assert sampler.entry(0)[2] == (64, 64)  # the window that leaves room for zooming out
    x, y = sampler.sample(16)
    assert x.shape == (16, 1, 32, 32) and np.allclose(y, 1.0)


def test_pair_weights_set_how_often_each_pair_is_drawn():
    pairs = [_pair(1.0, name="a"), _pair(2.0, name="b"), _pair(3.0, name="c")]
    sampler = PatchSampler(lambda i: pairs[i], 3, (16, 16), weights=[1.0, 3.0, 0.0], rng=np.random.default_rng(0))
    _, y = sampler.sample(400)
    drawn = y[:, 0, 0, 0]
    assert not np.any(drawn == 3.0)  # weight 0: never
    share_b = float(np.mean(drawn == 2.0))
    assert 0.65 < share_b < 0.85  # 3 of 4
