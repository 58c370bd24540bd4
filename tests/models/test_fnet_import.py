"""Importing pytorch_fnet's model.p: key mapping, same outputs, and refusing unsafe pickles."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from labelfree_app.errors import ModelError, UnsafeModelError
from labelfree_app.models.fnet_import import import_fnet_model, map_fnet_state_dict
from labelfree_app.models.package import load_package
from labelfree_app.models.registry import ModelRegistry


class _FnetLevel(nn.Module):
    """A stand-in for fnet's recursive ``_Net_recurse`` with the same layer names."""

    def __init__(self, dims: int, n_in: int, n_out: int, depth: int) -> None:
        super().__init__()
        conv, convt, bn = (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d) if dims == 2 else (
            nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d)

        def two_conv(a: int, b: int) -> nn.Module:
            block = nn.Module()
            block.conv1, block.bn1 = conv(a, b, 3, padding=1), bn(b)
            block.conv2, block.bn2 = conv(b, b, 3, padding=1), bn(b)
            return block

        self.depth = depth
        self.sub_2conv_more = two_conv(n_in, n_out)
        if depth > 0:
            self.sub_2conv_less = two_conv(2 * n_out, n_out)
            self.conv_down, self.bn0 = conv(n_out, n_out, 2, stride=2), bn(n_out)
            self.convt, self.bn1 = convt(2 * n_out, n_out, kernel_size=2, stride=2), bn(n_out)
            self.sub_u = _FnetLevel(dims, n_out, 2 * n_out, depth - 1)

    @staticmethod
    def _two(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(block.bn1(block.conv1(x)))
        return torch.relu(block.bn2(block.conv2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        more = self._two(self.sub_2conv_more, x)
        if self.depth == 0:
            return more
        down = torch.relu(self.bn0(self.conv_down(more)))
        up = torch.relu(self.bn1(self.convt(self.sub_u(down))))
        return self._two(self.sub_2conv_less, torch.cat((more, up), 1))


class _FnetNet(nn.Module):
    def __init__(self, dims: int, depth: int, mult_chan: int, in_channels: int = 1, out_channels: int = 1) -> None:
        super().__init__()
        self.net_recurse = _FnetLevel(dims, in_channels, mult_chan, depth)
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.conv_out = conv(mult_chan, out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.net_recurse(x))


def _fnet(dims: int, depth: int = 2, mult_chan: int = 4, in_channels: int = 1, seed: int = 0) -> _FnetNet:
    torch.manual_seed(seed)
    net = _FnetNet(dims, depth, mult_chan, in_channels)
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.3, 0.3)
            module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _write_fnet_run(folder: Path, net: _FnetNet, *, options: dict | None = None, key: str = "nn_state",
                    prefix: str = "", drop_batch_counters: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    state = {prefix + k: v for k, v in net.state_dict().items()
             if not (drop_batch_counters and k.endswith("num_batches_tracked"))}
    checkpoint = {
        key: state,
        "optimizer_state": {"state": {}, "param_groups": [{"lr": 0.001, "betas": (0.5, 0.999), "params": [0, 1]}]},
        "count_iter": 500000,
        "nn_module": "fnet_nn_3d",
        "fnet_model_kwargs": {"nn_class": "fnet.nn_modules.fnet_nn_3d.Net", "nn_kwargs": {}},
    }
    torch.save(checkpoint, folder / "model.p")
    if options is not None:
        (folder / "train_options.json").write_text(json.dumps(options))
    return folder / "model.p"


FNET_V2_OPTIONS = {
    "batch_size": 24,
    "bpds_kwargs": {"buffer_size": 16, "patch_shape": [32, 64, 64]},
    "dataset_train_kwargs": {"transform_signal": ["fnet.transforms.norm_around_center"]},
    "fnet_model_kwargs": {"nn_class": "fnet.nn_modules.fnet_nn_3d.Net", "nn_kwargs": {}, "lr": 0.001},
    "n_iter": 50000,
}


@pytest.mark.parametrize(("dims", "in_channels", "spatial"), [(2, 1, (16, 24)), (2, 3, (8, 8)), (3, 1, (8, 8, 16))])
def test_imported_model_gives_the_same_output_as_fnet(tmp_path, dims, in_channels, spatial):
    fnet = _fnet(dims, in_channels=in_channels)
    model_p = _write_fnet_run(tmp_path / "run", fnet, options=FNET_V2_OPTIONS)
    out = import_fnet_model(model_p, tmp_path / "run" / "train_options.json", tmp_path / "pkg",
                            model_id="fnet-dna", name="fnet DNA", target="DNA (Hoechst)")
    package = load_package(out)
    manifest = package.manifest
    assert manifest.architecture.kwargs == {"dims": dims, "in_channels": in_channels, "out_channels": 1,
                                            "depth": 2, "base_channels": 4, "out_kernel_size": 3}
    assert (manifest.kind, manifest.dims, manifest.input.channels) == ("unet", dims, in_channels)
    assert manifest.normalization.input.method == "zscore"
    assert manifest.training.steps == 500000
    assert manifest.training.settings["patch_shape"] == [32, 64, 64]
    assert manifest.training.settings["imported_from"] == "pytorch_fnet"
    x = torch.randn(2, in_channels, *spatial)
    with torch.inference_mode():
        expected = fnet(x)
        got = package.build_network()(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_old_checkpoints_with_dataparallel_prefix_and_no_batch_counters_import(tmp_path):
    fnet = _fnet(3, depth=3, mult_chan=2, seed=1)
    model_p = _write_fnet_run(tmp_path / "run", fnet, key="nn_net_state", prefix="module.", drop_batch_counters=True,
                              options={"nn_module": "fnet_nn_3d", "patch_size": [16, 32, 32],
                                       "transform_signal": ["fnet.transforms.normalize",
                                                            "fnet.transforms.Resizer((1, 0.37241, 0.37241))"]})
    out = import_fnet_model(tmp_path / "run", None, tmp_path / "pkg", model_id="old", name="Old", target="DNA")
    manifest = load_package(out).manifest
    assert manifest.architecture.kwargs["depth"] == 3 and manifest.architecture.kwargs["base_channels"] == 2
    assert manifest.training.settings["fnet_nn_class"] == "fnet_nn_3d", "options found next to model.p"
    assert "Resizer" in manifest.description
    x = torch.randn(1, 1, 8, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(load_package(out).build_network()(x), fnet(x), rtol=1e-4, atol=1e-5)
    assert model_p.is_file()


def test_imported_model_installs_with_its_smoke_test(tmp_path):
    model_p = _write_fnet_run(tmp_path / "run", _fnet(2))
    out = import_fnet_model(model_p, None, tmp_path / "pkg", model_id="fnet-2d", name="fnet 2D", target="DNA")
    entry = ModelRegistry(bundled_dir=tmp_path / "none").install(out)
    assert entry.id == "fnet-2d" and entry.source == "user"


def test_key_mapping_names_fnet_layers_after_ours():
    state, kwargs = map_fnet_state_dict(_fnet(2, depth=1).state_dict())
    assert kwargs["depth"] == 1
    assert {"encoders.0.conv1.weight", "encoders.1.bn2.running_var", "downs.0.conv.weight", "downs.0.bn.bias",
            "ups.0.conv.weight", "ups.0.bn.weight", "decoders.0.conv2.bias", "head.weight"} <= set(state)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("via_torch_save", [True, False])
def test_a_pickle_that_runs_code_is_refused_without_running_it(tmp_path, via_torch_save):
    marker = tmp_path / "pwned"
    model_p = tmp_path / "model.p"
    payload = {"nn_state": _fnet(2).state_dict(), "extra": _RunsCode(marker)}
    if via_torch_save:
        torch.save(payload, model_p)
    else:
        model_p.write_bytes(pickle.dumps(payload))
    with pytest.raises(UnsafeModelError) as info:
        import_fnet_model(model_p, None, tmp_path / "pkg", model_id="evil", name="Evil", target="DNA")
    assert str(model_p) in str(info.value) and "refused" in str(info.value)
    assert not marker.exists(), "the pickle's code must never run"
    assert not (tmp_path / "pkg").exists()
    # Control: the payload is live, an unrestricted unpickler would have run it.
    if via_torch_save:
        torch.load(model_p, weights_only=False)
    else:
        pickle.loads(model_p.read_bytes())
    assert marker.exists()


def test_damaged_or_foreign_files_are_refused(tmp_path):
    garbage = tmp_path / "garbage.p"
    garbage.write_bytes(b"\x80\x02" + np.random.default_rng(0).bytes(2000))  # a pickle header, then noise
    with pytest.raises(UnsafeModelError, match="cannot be read as plain weights"):
        import_fnet_model(garbage, None, tmp_path / "pkg", model_id="g", name="G", target="DNA")
    noise = tmp_path / "noise.p"
    noise.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(ModelError, match="is not a PyTorch checkpoint"):
        import_fnet_model(noise, None, tmp_path / "pkg", model_id="r", name="R", target="DNA")
    cut = tmp_path / "cut.p"
    torch.save({"nn_state": {"w": torch.zeros(100)}}, cut)
    cut.write_bytes(cut.read_bytes()[:300])
    with pytest.raises(ModelError, match="damaged or not a PyTorch checkpoint"):
        import_fnet_model(cut, None, tmp_path / "pkg", model_id="c", name="C", target="DNA")
    foreign = tmp_path / "foreign.p"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(3, 3)}}, foreign)
    with pytest.raises(ModelError, match="does not have"):
        import_fnet_model(foreign, None, tmp_path / "pkg", model_id="f", name="F", target="DNA")
    no_weights = tmp_path / "nothing.p"
    torch.save({"count_iter": 3}, no_weights)
    with pytest.raises(ModelError, match="holds no network weights"):
        import_fnet_model(no_weights, None, tmp_path / "pkg", model_id="n", name="N", target="DNA")
    with pytest.raises(ModelError, match="No fnet model file"):
        import_fnet_model(tmp_path / "missing.p", None, tmp_path / "pkg", model_id="m", name="M", target="DNA")
    assert not (tmp_path / "pkg").exists()


def _write_zip_of_text(path: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes/readme.txt", "not a checkpoint")
    return path


@pytest.mark.parametrize(
    ("name", "write", "says"),
    [
        ("notes.p", lambda p: p.write_text("hello world\nthis is text, not weights\n"), "is not a PyTorch checkpoint"),
        ("empty.p", lambda p: p.write_bytes(b""), "is empty"),
        ("archive.p", _write_zip_of_text, "is a zip file but not a PyTorch checkpoint"),
        ("model.json", lambda p: p.write_text(json.dumps({"nn_state": {}})), "is not a PyTorch checkpoint"),
    ],
)
def test_files_that_are_not_fnet_checkpoints_are_one_sentence(tmp_path, name, write, says):
    path = tmp_path / name
    write(path)
    with pytest.raises(ModelError) as info:
        import_fnet_model(path, None, tmp_path / "pkg", model_id="x", name="X", target="DNA")
    message = str(info.value)
    assert says in message and str(path) in message
    assert "\n" not in message and "()" not in message and message.endswith(".")
    assert "fnet" in message, "the sentence says what to give instead"
    assert not (tmp_path / "pkg").exists()
