"""The diffusion runner: ONNX Runtime and torch agree, and a residual model's U-Net mean is
computed once per tile, not at every step for every sample."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from labelfree_app.core.diffusion_runner import DiffusionRunner
from labelfree_app.core.drive import drive
from labelfree_app.core.tiling import predict_tiled
from labelfree_app.models.architectures import build_network
from tests.models.diffusion.test_denoiser import _randomise_zero_layers

TILE, HALO = (32, 32), (4, 4)
COND = np.random.default_rng(0).normal(0, 1, (1, 44, 52)).astype(np.float32)


class _Package:
    """Just what the runner asks of a model package: a network to build."""

    def __init__(self, network: torch.nn.Module) -> None:
        self.network = network

    def build_network(self, device: Any) -> torch.nn.Module:
        return self.network


def _manifest(arch: str, kwargs: dict) -> dict:
    return {"architecture": {"id": arch, "kwargs": kwargs}, "output": {"channels": 1},
            "diffusion": {"schedule": "cosine", "train_steps": 1000, "prediction": "v"}}


def _network(residual: bool) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(0)
    if residual:
        arch, kwargs = "residual_cond_denoiser", {
            "dims": 2, "in_channels": 1, "out_channels": 1, "prediction": "v",
            "mean_net": {"depth": 2, "base_channels": 4},
            "denoiser": {"base_channels": 8, "channel_mults": [1, 2], "attention_levels": []}}
    else:
        arch, kwargs = "cond_denoiser_unet", {"dims": 2, "in_channels": 1, "out_channels": 1, "base_channels": 8,
                                              "channel_mults": [1, 2]}
    net = build_network(arch, kwargs)
    _randomise_zero_layers(net)
    return net.eval(), _manifest(arch, kwargs)


def _runner(residual: bool) -> DiffusionRunner:
    net, manifest = _network(residual)
    return DiffusionRunner(_Package(net), manifest, torch.device("cpu"))


def _sample(runner: DiffusionRunner, samples: int = 3, steps: int = 4) -> tuple[np.ndarray, np.ndarray]:
    mean, variance, _ = drive(runner.sample_image(
        COND, samples=samples, steps=steps, sampler="dpmpp2m", eta=0.0, seed=1, tile_shape=TILE, halo=HALO,
        batch_size=2, n_frames=0, preview_interval_s=1e9, to_output_units=lambda a: a), lambda event: None)
    return mean, variance


def _tile_count() -> int:
    seen = []
    predict_tiled(COND, lambda tiles: seen.append(len(tiles)) or tiles, tile_shape=TILE,
                  overlap=tuple(2 * h for h in HALO), margin=HALO, multiple_of=4, batch_size=2)
    return sum(seen)


def test_a_residual_models_mean_is_computed_once_per_tile_and_gives_the_same_samples(monkeypatch):
    monkeypatch.setenv("LABELFREE_BACKEND", "torch")
    monkeypatch.setenv("LABELFREE_DIFFUSION_GROUP", "2")  # 3 samples: two groups share the cache
    images: list[int] = []
    cached = _runner(residual=True)
    cached.network.mean_net.register_forward_hook(lambda module, args, out: images.append(out.shape[0]))
    mean, variance = _sample(cached)
    assert sum(images) == cached.mean_calls == _tile_count()

    plain = _runner(residual=True)
    plain.residual = False  # the network's own forward: mu again at every call for every sample
    images.clear()
    plain.network.mean_net.register_forward_hook(lambda module, args, out: images.append(out.shape[0]))
    plain_mean, plain_variance = _sample(plain)
    assert sum(images) == _tile_count() * 4 * 3  # tiles x steps x samples
    np.testing.assert_allclose(mean, plain_mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(variance, plain_variance, rtol=1e-4, atol=1e-6)


def test_a_cached_mean_is_recomputed_when_the_condition_pixels_differ(monkeypatch):
    monkeypatch.setenv("LABELFREE_BACKEND", "torch")
    runner = _runner(residual=True)
    cache: list = []
    tiles = np.ascontiguousarray(COND[None, :, :32, :32])
    first = runner._mean(tiles, cache, 0)
    assert runner._mean(tiles.copy(), cache, 0) is first and runner.mean_calls == 1
    other = runner._mean(tiles + 1.0, cache, 0)
    assert runner.mean_calls == 2 and not torch.equal(first, other)


@pytest.mark.parametrize("residual", [False, True])
def test_onnx_runtime_and_torch_sample_the_same_images(monkeypatch, residual):
    pytest.importorskip("onnxruntime")
    monkeypatch.delenv("LABELFREE_BACKEND", raising=False)
    fast = _runner(residual)
    assert fast.backend == "onnxruntime"
    mean, variance = _sample(fast)
    monkeypatch.setenv("LABELFREE_BACKEND", "torch")
    slow = _runner(residual)
    assert slow.backend == "torch"
    slow_mean, slow_variance = _sample(slow)
    assert np.abs(mean).max() > 0.1  # the network's output reaches the samples
    np.testing.assert_allclose(mean, slow_mean, atol=1e-4)
    np.testing.assert_allclose(variance, slow_variance, rtol=1e-3, atol=1e-5)


def test_an_image_that_fits_one_tile_is_sampled_without_a_reflected_rim(monkeypatch):
    runner = _runner(residual=False)
    seen: list[tuple[int, ...]] = []
    real = runner._denoiser()
    monkeypatch.setattr(runner, "_denoiser", lambda: lambda x, t, c: seen.append(tuple(x.shape[2:])) or real(x, t, c))
    small = COND[:, :24, :22]  # fits one 32² tile, with or without a 4-pixel rim
    drive(runner.sample_image(small, samples=2, steps=2, sampler="dpmpp2m", eta=0.0, seed=1, tile_shape=TILE,
                              halo=HALO, batch_size=2, n_frames=0, preview_interval_s=1e9,
                              to_output_units=lambda a: a), lambda event: None)
    assert set(seen) == {(24, 22)}  # the image itself (a multiple of 2): not a 32×30 tile with a rim
    seen.clear()
    _sample(runner, samples=2, steps=2)  # 44×52 needs several tiles: each keeps its halo context
    assert set(seen) == {TILE}


def test_the_edge_margin_is_the_halo_exactly_when_the_image_needs_more_than_one_tile():
    from labelfree_app.core.diffusion_runner import edge_margin

    assert edge_margin((512, 512), (576, 576), (32, 32)) == (0, 0)
    assert edge_margin((520, 512), (576, 576), (32, 32)) == (32, 32)  # 520 + 2·32 > 576: tiles overlap
    assert edge_margin((512, 1024), (576, 576), (32, 32)) == (32, 32)
