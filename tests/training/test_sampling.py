"""Patch sampling: never inside the validation region, foreground weighting, buffer, augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from labelfree_app.errors import TrainingDataError
from labelfree_app.training.augment import augment_pair
from labelfree_app.training.config import PairSpec
from labelfree_app.training.datasets import LoadedPair
from labelfree_app.training.sampling import CornerTable, PatchSampler, Region, allowed_corners, patch_sums


def _pair(target: np.ndarray, source: np.ndarray | None = None, name: str = "t.tif") -> LoadedPair:
    source = target if source is None else source
    return LoadedPair(PairSpec("in.tif", name), source[None].astype(np.float32),
                      target[None].astype(np.float32), False)


def test_region_parses_open_ends_and_rejects_bad_text() -> None:
    region = Region.parse("10:20, 30:")
    assert region.resolve((100, 50)).bounds == ((10, 20), (30, 50))
    assert Region.parse("5:9,0:4").resolve((3, 10, 10)).bounds == ((0, 3), (5, 9), (0, 4))
    for bad in ("10-20,0:5", "a:b,0:5", "1:2"):
        with pytest.raises(TrainingDataError):
            Region.parse(bad)
    with pytest.raises(TrainingDataError, match="does not fit"):
        Region.parse("0:200,0:10").resolve((100, 100))


def test_allowed_corners_match_a_brute_force_overlap_check() -> None:
    shape, patch, region = (20, 17), (5, 4), Region(((6, 11), (3, 9)))
    allowed = allowed_corners(shape, patch, region)
    for y in range(shape[0] - patch[0] + 1):
        for x in range(shape[1] - patch[1] + 1):
            mask = np.zeros(shape, bool)
            mask[y:y + patch[0], x:x + patch[1]] = True
            assert allowed[y, x] == (not mask[region.slices].any())


def test_training_patches_never_touch_the_validation_region() -> None:
    marker = np.zeros((96, 96), np.float32)
    marker[40:70, 20:64] = 1.0  # the validation region
    sampler = PatchSampler(lambda i: _pair(marker), 1, (16, 16), exclude=Region.parse("40:70,20:64"),
                           foreground_weight=0.9, rng=np.random.default_rng(0))
    seen = np.zeros_like(marker)
    for _ in range(100):
        x, y = sampler.sample(8)
        assert x.max() == 0 and y.max() == 0
    # Patches still reach around the region (all four sides) rather than avoiding a big area.
    table = sampler.entry(0)[1]
    rng = np.random.default_rng(1)
    for _ in range(2000):
        cy, cx = table.draw(rng)
        seen[cy:cy + 16, cx:cx + 16] = 1
    assert seen[40:70, 20:64].sum() == 0
    assert seen[:40].any() and seen[70:].any() and seen[:, :20].any() and seen[:, 64:].any()


def test_foreground_weighting_raises_the_share_of_foreground_pixels() -> None:
    rng = np.random.default_rng(0)
    target = np.zeros((256, 256), np.float32)
    for cy, cx in rng.integers(10, 246, size=(6, 2)):  # six small nuclei on a large background
        yy, xx = np.ogrid[:256, :256]
        target[(yy - cy) ** 2 + (xx - cx) ** 2 < 36] = 1.0
    target += rng.normal(scale=0.05, size=target.shape).astype(np.float32)

    def foreground_share(weight: float) -> float:
        sampler = PatchSampler(lambda i: _pair(target), 1, (32, 32), foreground_weight=weight,
                               augment=False, rng=np.random.default_rng(1))
        _, y = sampler.sample(400)
        return float((y > 0.5).mean())

    uniform, weighted = foreground_share(0.0), foreground_share(0.8)
    assert weighted > 2.5 * uniform


def test_patch_sums_equal_brute_force_box_counts() -> None:
    mask = np.random.default_rng(2).random((4, 9, 11)) > 0.6
    sums = patch_sums(mask, (2, 3, 4))
    for index in np.ndindex(*sums.shape):
        z, y, x = index
        assert sums[index] == mask[z:z + 2, y:y + 3, x:x + 4].sum()
    grid = [np.arange(0, 3), np.arange(0, 7, 3), np.arange(0, 8, 3)]
    np.testing.assert_array_equal(patch_sums(mask, (2, 3, 4), grid), sums[np.ix_(*grid)])


def test_an_image_without_room_for_a_patch_is_a_clear_error() -> None:
    sampler = PatchSampler(lambda i: _pair(np.ones((40, 40))), 1, (32, 32), exclude=Region.parse("8:40,0:40"),
                           rng=np.random.default_rng(0))
    with pytest.raises(TrainingDataError, match="no room outside the validation region"):
        sampler.sample(1)
    small = PatchSampler(lambda i: _pair(np.ones((20, 40))), 1, (32, 32), rng=np.random.default_rng(0))
    with pytest.raises(TrainingDataError, match="smaller than the patch"):
        small.sample(1)


def test_buffer_swaps_images_and_its_state_restores_the_sequence() -> None:
    images = [np.full((24, 24), float(k), np.float32) for k in range(5)]
    loads: list[int] = []

    def load(i: int) -> LoadedPair:
        loads.append(i)
        return _pair(images[i] + np.arange(24)[:, None])

    def make() -> PatchSampler:
        return PatchSampler(load, 5, (8, 8), buffer_size=2, switch_every=3, rng=np.random.default_rng(4))

    first = make()
    for _ in range(4):
        first.sample(2)
    state, rng_state = first.state(), first.rng.bit_generator.state
    later = [first.sample(2)[0] for _ in range(6)]
    assert len(set(loads)) > 2  # images beyond the first two were swapped in
    second = make()
    second.restore(state)
    second.rng.bit_generator.state = rng_state
    again = [second.sample(2)[0] for _ in range(6)]
    for a, b in zip(later, again):
        np.testing.assert_array_equal(a, b)


def test_augmentation_transforms_input_and_target_alike() -> None:
    rng = np.random.default_rng(0)
    source = rng.random((3, 16, 16)).astype(np.float32)
    outcomes = set()
    for _ in range(40):
        x, y = augment_pair(source, source[:1].copy(), rng)
        np.testing.assert_array_equal(x[:1], y)
        outcomes.add(x.tobytes())
    assert len(outcomes) == 8  # the dihedral group of the square: 4 turns x flip
    x3, y3 = augment_pair(rng.random((1, 4, 8, 6)), rng.random((1, 4, 8, 6)), rng)
    assert x3.shape == y3.shape == (1, 4, 8, 6)  # not square in YX: flips only, Z untouched


def test_coarse_corner_cells_for_big_images_still_avoid_the_region() -> None:
    marker = np.zeros((200, 300), np.float32)
    marker[50:120, 100:260] = 1.0
    pair = _pair(marker)
    table = CornerTable(pair, (16, 16), Region.parse("50:120,100:260"), 0.5, max_corners=2000)
    assert table.cdf.size <= 2000 * 1.5  # grouped into cells
    rng = np.random.default_rng(0)
    corners = [table.draw(rng) for _ in range(3000)]
    for cy, cx in corners:
        assert marker[cy:cy + 16, cx:cx + 16].max() == 0
    ys, xs = np.array(corners).T
    assert len(set(ys)) > 100 and len(set(xs)) > 150  # offsets inside cells reach every row/column


def test_intensity_jitter_changes_the_input_brightness_but_never_the_target() -> None:
    rng = np.random.default_rng(0)
    pair = LoadedPair(PairSpec("in.tif", "t.tif"), rng.normal(size=(2, 16, 16)).astype(np.float32),
                      rng.normal(size=(1, 16, 16)).astype(np.float32), False)
    plain = PatchSampler(lambda i: pair, 1, (16, 16), augment=False, rng=np.random.default_rng(1))
    jittered = PatchSampler(lambda i: pair, 1, (16, 16), augment=False, intensity_jitter=0.3,
                            rng=np.random.default_rng(1))
    x0, y0 = plain.sample(4)
    x1, y1 = jittered.sample(4)
    np.testing.assert_array_equal(y0, y1)
    assert not np.allclose(x0, x1)
    for a, b in zip(x0, x1):  # each patch is an affine change of the original: gain in [e^-0.3, e^0.3]
        gain = np.polyfit(a.ravel(), b.ravel(), 1)[0]
        assert np.exp(-0.3) - 1e-4 <= gain <= np.exp(0.3) + 1e-4
