from __future__ import annotations

import tracemalloc
from typing import Callable

import numpy as np
import pytest
import torch

from labelfree_app.core.tiling import (
    TileGrid,
    blend_weights,
    choose_tile_shape,
    fit_tile_shape_to_memory,
    iter_predict_tiled,
    predict_tiled,
    shrink_tile_shape,
)
from labelfree_app.errors import ModelError

MIXING = np.array([[1.0, -2.0], [0.5, 0.25], [-0.3, 1.5]], dtype=np.float32)  # 2 -> 3 channels


def pointwise(batch: np.ndarray) -> np.ndarray:
    """Translation-equivariant fake network: per-pixel channel mixing, * 2 + 1."""
    return np.einsum("oc,bc...->bo...", MIXING, batch) * 2.0 + 1.0


def conv_net(dims: int) -> Callable[[np.ndarray], np.ndarray]:
    """A tiny zero-padded conv net (receptive-field radius 2) as a predictor."""
    conv = torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d
    torch.manual_seed(0)
    net = torch.nn.Sequential(conv(2, 6, 3, padding=1), torch.nn.Tanh(), conv(6, 3, 3, padding=1)).eval()

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(batch)).numpy()

    return predict


def random_image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 20.0, size=(2, *shape)).astype(np.float32)


CASES_2D = [((100, 77), 64, 16), ((300, 301), 128, 32), ((20, 9), 64, 16), ((1, 1), 32, 8), ((3, 200), 32, 8)]
CASES_3D = [((13, 45, 61), (8, 32, 32), (4, 8, 8)), ((5, 6, 7), (16, 32, 32), (4, 8, 8))]


@pytest.mark.parametrize("multiple_of", [1, 16])
@pytest.mark.parametrize(("shape", "tile", "overlap"), CASES_2D + CASES_3D)
def test_tiled_equals_untiled_for_a_pointwise_predictor(shape, tile, overlap, multiple_of) -> None:
    image = random_image(shape)
    tiled = predict_tiled(image, pointwise, tile_shape=tile, overlap=overlap, multiple_of=multiple_of)
    untiled = pointwise(image[None])[0]
    assert tiled.shape == untiled.shape and tiled.dtype == np.float32
    assert np.abs(tiled - untiled).max() < 1e-4 * np.abs(untiled).max()


@pytest.mark.parametrize(("shape", "tile", "overlap"), [((100, 77), 32, 16), ((300, 301), 64, 16), ((20, 9), 64, 16)])
def test_tiled_conv_net_equals_untiled_on_the_reflect_padded_image_2d(shape, tile, overlap) -> None:
    image = random_image(shape) / 100.0
    predict = conv_net(2)
    tiled = predict_tiled(image, predict, tile_shape=tile, overlap=overlap, multiple_of=8, batch_size=2)
    padded = np.pad(image, ((0, 0), (2, 2), (2, 2)), mode="reflect")
    reference = predict(padded[None])[0][:, 2:-2, 2:-2]
    assert np.abs(tiled - reference).max() < 1e-4
    interior = predict(image[None])[0][:, 2:-2, 2:-2]  # plain untiled run, away from its zero-padded border
    assert np.abs(tiled[:, 2:-2, 2:-2] - interior).max() < 1e-4


def test_tiled_conv_net_equals_untiled_3d() -> None:
    image = random_image((13, 45, 61)) / 100.0
    predict = conv_net(3)
    tiled = predict_tiled(image, predict, tile_shape=(8, 24, 24), overlap=(4, 8, 8), margin=2, batch_size=3)
    padded = np.pad(image, ((0, 0), (2, 2), (2, 2), (2, 2)), mode="reflect")
    reference = predict(padded[None])[0][:, 2:-2, 2:-2, 2:-2]
    assert np.abs(tiled - reference).max() < 1e-4


def test_batch_size_does_not_change_the_result() -> None:
    image = random_image((150, 130))
    one = predict_tiled(image, pointwise, tile_shape=48, overlap=16, batch_size=1)
    three = predict_tiled(image, pointwise, tile_shape=48, overlap=16, batch_size=3)
    np.testing.assert_array_equal(one, three)
    net = conv_net(2)
    np.testing.assert_allclose(predict_tiled(image / 100, net, tile_shape=48, overlap=16, batch_size=1),
                               predict_tiled(image / 100, net, tile_shape=48, overlap=16, batch_size=3), atol=1e-6)


def test_constant_input_gives_constant_output_without_seams() -> None:
    image = np.full((2, 90, 110), 0.7, dtype=np.float32)
    out = predict_tiled(image, conv_net(2), tile_shape=32, overlap=16, multiple_of=16, batch_size=4)
    for channel in out:
        assert np.ptp(channel) < 1e-5


def test_tiles_cover_the_image_and_respect_the_network_multiple() -> None:
    grid = TileGrid.create((100, 77), (48, 40), (16, 12), multiple_of=16)
    assert all(t % 16 == 0 for t in grid.tile_shape) and all(s % 16 == 0 for s in grid.stride)
    covered = np.zeros((100, 77), dtype=int)
    for tile in grid:
        assert all(sl.stop - sl.start == t for sl, t in zip(tile.source, grid.tile_shape))
        assert all(0 <= sl.start and sl.stop <= p for sl, p in zip(tile.source, grid.padded_shape))
        weights = grid.weights(tile)[tile.crop]
        covered[tile.destination] += weights > 0
    assert covered.min() >= 1
    assert len(grid) == grid.n_tiles == len(list(grid))
    assert all(o >= 12 for o in grid.overlap)


def test_image_smaller_than_a_tile_gets_one_shrunken_tile() -> None:
    grid = TileGrid.create((20, 9), 256, 32, multiple_of=16)
    assert grid.n_tiles == 1
    assert grid.tile_shape == (48, 32)  # 20 + 2*8 -> 48 and 9 + 2*8 -> 32: padded image, rounded to 16


def test_blend_weights_of_neighbours_sum_to_one() -> None:
    tile, overlap = (40, 48), (16, 24)
    weights = blend_weights(tile, overlap).astype(np.float64)
    total = np.zeros((3 * 40, 3 * 48))
    for i in range(4):
        for j in range(4):
            y, x = i * (40 - 16), j * (48 - 24)
            total[y:y + 40, x:x + 48] += weights
    inner = total[40:80, 48:96]
    np.testing.assert_allclose(inner, 1.0, atol=1e-6)


def test_blend_weights_are_zero_in_the_margin_and_one_at_image_edges() -> None:
    w = blend_weights((32,), 16)
    assert (w[:4] == 0).all() and (w[-4:] == 0).all() and w[16] == 1.0
    assert (np.diff(w[:16]) >= 0).all()
    edge = blend_weights((32,), 16, neighbours=[(False, True)])
    assert (edge[:16] == 1.0).all() and edge[-1] == 0.0
    assert (blend_weights((8, 8), 4, neighbours=[(False, False)] * 2) == 1.0).all()


def test_weight_sums_are_positive_over_the_image() -> None:
    for shape, tile, overlap, multiple in [((300, 301), 64, 32, 16), ((13, 45, 61), (8, 16, 16), 4, 1)]:
        grid = TileGrid.create(shape, tile, overlap, multiple_of=multiple)
        for sums, n in zip(grid.weight_sums(), shape):
            assert sums.shape == (n,) and sums.min() > 0.5


def test_too_small_tile_for_the_overlap_still_tiles() -> None:
    image = random_image((70, 70))
    out = predict_tiled(image, pointwise, tile_shape=16, overlap=32, multiple_of=8)
    assert np.abs(out - pointwise(image[None])[0]).max() < 1e-3


def test_progress_reports_every_batch_and_generator_returns_the_result() -> None:
    image = random_image((100, 100))
    calls: list[tuple[int, int]] = []
    out = predict_tiled(image, pointwise, tile_shape=40, overlap=8, batch_size=4, progress=lambda d, t: calls.append((d, t)))
    total = TileGrid.create((100, 100), 40, 8).n_tiles
    assert calls[-1] == (total, total) and len(calls) == -(-total // 4)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    steps = iter_predict_tiled(image, pointwise, tile_shape=40, overlap=8, batch_size=4)
    with pytest.raises(StopIteration) as stop:
        while True:
            next(steps)
    np.testing.assert_array_equal(stop.value.value, out)


def test_cancelling_the_generator_stops_calling_the_predictor() -> None:
    calls = []

    def counting(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape[0])
        return batch

    steps = iter_predict_tiled(random_image((200, 200)), counting, tile_shape=32, overlap=8)
    next(steps)
    steps.close()
    assert calls == [1]


def test_torch_tensor_outputs_are_accepted() -> None:
    image = random_image((50, 60))
    out = predict_tiled(image, lambda b: torch.from_numpy(b) * 3.0, tile_shape=32, overlap=8)
    np.testing.assert_allclose(out, image * 3.0, rtol=1e-6)


def test_a_model_that_changes_the_tile_size_is_refused() -> None:
    with pytest.raises(ModelError, match="keep the size"):
        predict_tiled(random_image((64, 64)), lambda b: b[..., 1:-1, 1:-1], tile_shape=32, overlap=8)
    with pytest.raises(ModelError):
        predict_tiled(random_image((64, 64)), lambda b: b, tile_shape=32, overlap=8, out_channels=3)


def test_memory_holds_the_output_and_one_batch_not_all_tiles() -> None:
    image = random_image((1024, 1024))[:1]
    tracemalloc.start()
    try:
        predict_tiled(image, lambda b: b * 2.0, tile_shape=128, overlap=16, batch_size=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    output_bytes = image.nbytes
    assert peak < output_bytes + 4 * 2 * 128 * 128 * 4 * 4  # output + a few batch-sized buffers


def test_choose_tile_shape_fits_the_image_multiple_and_budget() -> None:
    assert choose_tile_shape((100, 77), 256, 16) == (112, 80)
    assert choose_tile_shape((2000, 2000), 256, 16) == (256, 256)
    assert choose_tile_shape((2000, 2000), 256, 16, max_voxels=128 * 128) == (128, 128)
    tile = choose_tile_shape((64, 2000, 2000), (32, 256, 256), 16, max_voxels=20_000)
    assert np.prod(tile) <= 20_000 and all(t % 16 == 0 for t in tile)


def test_fit_tile_shape_to_memory_uses_the_free_bytes() -> None:
    roomy = fit_tile_shape_to_memory((4096, 4096), 512, 16, free_bytes=8 * 2**30, bytes_per_voxel=4000)
    tight = fit_tile_shape_to_memory((4096, 4096), 512, 16, free_bytes=200 * 2**20, bytes_per_voxel=4000)
    assert roomy == (512, 512)
    assert np.prod(tight) * 4000 <= 0.6 * 200 * 2**20 and tight[0] % 16 == 0
    assert fit_tile_shape_to_memory((300, 300), 256, 16, free_bytes=None, bytes_per_voxel=1) == (256, 256)


def test_shrink_tile_shape_halves_the_largest_axes_down_to_the_multiple() -> None:
    assert shrink_tile_shape((256, 256), 16) == (128, 128)
    assert shrink_tile_shape((32, 256, 256), 16) == (32, 128, 128)
    assert shrink_tile_shape((48, 16), 16) == (32, 16)
    assert shrink_tile_shape((16, 16), 16) == (16, 16)


def test_a_memory_mapped_image_is_read_tile_by_tile(tmp_path) -> None:
    image = random_image((90, 70))
    mapped = np.memmap(tmp_path / "image.raw", dtype=np.float32, mode="w+", shape=image.shape)
    mapped[:] = image
    mapped.flush()
    readonly = np.memmap(tmp_path / "image.raw", dtype=np.float32, mode="r", shape=image.shape)
    out = predict_tiled(readonly, pointwise, tile_shape=32, overlap=8, multiple_of=16)
    assert np.abs(out - pointwise(image[None])[0]).max() < 1e-3
