"""UNetPredictor: same numbers as the network, shape checks, test-time augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labelfree_app.errors import InputShapeError
from labelfree_app.models.package import load_package, save_package, unet_manifest
from labelfree_app.core.unet_runner import UNetPredictor
from labelfree_app.models.unet import UNet


def _trained_looking_net(dims: int, in_ch: int = 1, out_ch: int = 1, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    net = UNet(dims=dims, in_channels=in_ch, out_channels=out_ch, depth=2, base_channels=4)
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.3, 0.3)
            module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _reference(net: UNet, batch: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return net(torch.from_numpy(batch)).numpy()


@pytest.mark.parametrize(("dims", "shape"), [(2, (3, 2, 16, 24)), (3, (2, 2, 8, 8, 12))])
@pytest.mark.parametrize("channels_last", [True, False])
def test_predict_matches_the_network_in_float32(tmp_path, dims, shape, channels_last):
    net = _trained_looking_net(dims, in_ch=2, out_ch=3)
    kwargs = net.architecture_kwargs()
    tile = [16, 16] if dims == 2 else [8, 16, 16]
    path = save_package(tmp_path / "p", unet_manifest(kwargs, model_id="p", name="P", target="DNA",
                                                       tile_shape=tile, halo=[2] * dims), net.state_dict())
    predictor = UNetPredictor(load_package(path), channels_last=channels_last)
    assert (predictor.dims, predictor.in_channels, predictor.out_channels) == (dims, 2, 3)
    assert predictor.required_multiple == 4 and predictor.device == torch.device("cpu")
    assert predictor.amp_dtype is None, "no reduced precision on CPU unless asked"
    batch = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = predictor.predict(batch)
    assert got.dtype == np.float32 and got.shape == (shape[0], 3, *shape[2:])
    assert got.flags.c_contiguous
    np.testing.assert_allclose(got, _reference(net, batch), rtol=1e-4, atol=1e-5)


def test_from_network_leaves_the_network_unchanged():
    net = _trained_looking_net(2)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    predictor = UNetPredictor.from_network(net)
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    batch = np.random.default_rng(1).standard_normal((1, 1, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(predictor.predict(batch), _reference(net.eval(), batch), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "shape", [(1, 2, 16, 16), (1, 1, 16), (1, 1, 4, 16, 16), (1, 1, 18, 16)], ids=["channels", "1d", "3d", "multiple"]
)
def test_wrong_tile_shapes_are_clear_errors(shape):
    predictor = UNetPredictor.from_network(_trained_looking_net(2))
    with pytest.raises(InputShapeError):
        predictor.predict(np.zeros(shape, np.float32))


def test_bf16_autocast_on_cpu_stays_close():
    net = _trained_looking_net(2)
    predictor = UNetPredictor.from_network(net, amp=True)
    assert predictor.amp_dtype == torch.bfloat16
    batch = np.random.default_rng(2).standard_normal((2, 1, 16, 16)).astype(np.float32)
    got = predictor.predict(batch)
    expected = _reference(net, batch)
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() <= 0.05 * np.abs(expected).max()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_a_clear_error():
    from labelfree_app.errors import DeviceError

    with pytest.raises(DeviceError, match="cuda"):
        UNetPredictor.from_network(_trained_looking_net(2), device="cuda")
