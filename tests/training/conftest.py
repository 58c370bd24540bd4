"""Synthetic paired images for the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from scipy.ndimage import gaussian_filter

from labelfree_app.training.config import DiffusionSettings, PairSpec, TrainConfig, UNetSettings
from labelfree_app.training.loop import train

TINY_UNET = UNetSettings(depth=2, base_channels=8)
TINY_DIFFUSION = DiffusionSettings(base_channels=8, channel_mults=(1, 2), attention_levels=(), val_samples=2,
                                   val_sampling_steps=3, sampling_steps=4, samples=2, val_max_shape=(32, 32))


def smooth_texture(shape: tuple[int, ...], seed: int, sigma: float = 2.0) -> np.ndarray:
    """Random blobs: smoothed noise, scaled to a camera-like uint16 range."""
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=shape), sigma)
    field = (field - field.min()) / (field.max() - field.min())
    return (1000 + 20000 * field).astype(np.uint16)


def blurred(image: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """The target a network should learn: a blur of the input (a local, learnable mapping)."""
    return gaussian_filter(image.astype(np.float32), sigma).astype(np.float32)


def write_pair(folder: Path, name: str, shape: tuple[int, int] = (96, 96), seed: int = 0) -> tuple[Path, Path]:
    """Write input/<name>.tif and target/<name>.tif (target = blurred input)."""
    source = smooth_texture(shape, seed)
    (folder / "input").mkdir(parents=True, exist_ok=True)
    (folder / "target").mkdir(parents=True, exist_ok=True)
    in_path, tg_path = folder / "input" / f"{name}.tif", folder / "target" / f"{name}.tif"
    tifffile.imwrite(in_path, source)
    tifffile.imwrite(tg_path, blurred(source))
    return in_path, tg_path


@pytest.fixture
def synthetic_pair(tmp_path: Path) -> tuple[Path, Path]:
    return write_pair(tmp_path / "data", "field", shape=(128, 128), seed=3)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks run fastest on one thread; with other test processes on this 2-core machine,
    two OpenMP threads wait on each other (a tiny U-Net step went from ~10 ms to ~400 ms)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(pair: tuple[Path, Path], out: Path, **changes: object) -> TrainConfig:
    """A seconds-long run of a tiny network on one 128×128 pair, validated on its bottom-right quadrant."""
    base = TrainConfig(pairs=(PairSpec(str(pair[0]), str(pair[1])),), out_dir=out, val_region="64:128,64:128",
                       patch_shape=(32, 32), batch_size=4, max_steps=100, warmup_steps=10, val_every=50,
                       checkpoint_every=50, unet=TINY_UNET, diffusion=TINY_DIFFUSION, target_name="blur")
    return base.with_changes(**changes)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One short U-Net run (100 steps) shared by the tests, and its untrained twin (0 steps)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("trained")
        pair = write_pair(root / "data", "field", shape=(128, 128), seed=3)
        events: list[object] = []
        untrained = train(tiny_config(pair, root / "untrained", max_steps=0))
        package = train(tiny_config(pair, root / "model"), progress=events.append)
    finally:
        torch.set_num_threads(before)
    return {"pair": pair, "package": package, "events": events, "untrained_package": untrained}
