"""Absurd manifests are refused before anything big is built or read: network settings out of range,
networks with too many parameters, oversized or deeply nested manifest files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelfree_app.errors import ManifestError
from labelfree_app.models import architectures
from labelfree_app.models.manifest import MAX_MANIFEST_BYTES, Manifest
from labelfree_app.models.package import (
    MANIFEST_FILE,
    load_package,
    save_package,
    unet_manifest,
)
from labelfree_app.models.unet import UNet
from tests.factories import diffusion_manifest

TINY = {"dims": 2, "in_channels": 1, "out_channels": 1, "depth": 2, "base_channels": 4}
DENOISER = {"dims": 2, "in_channels": 1, "out_channels": 1, "base_channels": 8, "channel_mults": [1, 2],
            "num_res_blocks": 1, "attention_levels": [], "dropout": 0.0, "patch_size": 1}


def _unet_dict(**kwargs) -> dict:
    arch = {**TINY, **kwargs}
    data = unet_manifest(arch, model_id="m", name="M", target="DNA", tile_shape=[32, 32], halo=[4, 4])
    data["weights"] = {"file": "weights.safetensors", "sha256": "ab" * 32}
    return data


def _diffusion_dict(arch_id: str = "cond_denoiser_unet", **kwargs) -> dict:
    data = diffusion_manifest({**DENOISER, **kwargs}, "d")
    data["architecture"]["id"] = arch_id
    data["weights"] = {"file": "weights.safetensors", "sha256": "ab" * 32}
    return data


def _refused(data: dict) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        Manifest.from_dict(data, source="/pkg/manifest.json")
    message = str(info.value)
    assert "/pkg/manifest.json" in message and "\n" not in message and message.endswith(".")
    return info.value


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("base_channels", 100000, "between 1 and 512"),
        ("base_channels", 0, "between 1 and 512"),
        ("base_channels", "32", "between 1 and 512"),
        ("depth", 30, "between 0 and 8"),
        ("out_kernel_size", 999, "between 1 and 15"),
    ],
)
def test_unet_settings_out_of_range_are_refused_naming_the_field_and_the_range(name, value, allowed):
    error = _refused(_unet_dict(**{name: value}))
    assert error.field == f"architecture.kwargs.{name}"
    assert f"'architecture.kwargs.{name}'" in str(error) and allowed in str(error)


def test_channel_counts_out_of_range_are_refused():
    data = _unet_dict(in_channels=100000)
    data["input"]["channels"] = 100000
    error = _refused(data)
    assert error.field in ("input.channels", "architecture.kwargs.in_channels") and "256" in str(error)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base_channels": 4096}, "architecture.kwargs.base_channels"),
        ({"channel_mults": [1] * 40}, "architecture.kwargs.channel_mults"),
        ({"channel_mults": [1, 1000]}, "architecture.kwargs.channel_mults"),
        ({"num_res_blocks": 500}, "architecture.kwargs.num_res_blocks"),
        ({"patch_size": 4096}, "architecture.kwargs.patch_size"),
        ({"time_embed_dim": 10**7}, "architecture.kwargs.time_embed_dim"),
        ({"dropout": 2.0}, "architecture.kwargs.dropout"),
    ],
)
def test_denoiser_settings_out_of_range_are_refused(kwargs, field):
    assert _refused(_diffusion_dict(**kwargs)).field == field


def test_nested_residual_settings_are_bounded_too():
    data = _diffusion_dict("residual_cond_denoiser")
    kwargs = {"dims": 2, "in_channels": 1, "out_channels": 1, "mean_net": {"depth": 2, "base_channels": 100000},
              "denoiser": {"base_channels": 8, "channel_mults": [1, 2]}, "schedule": "cosine",
              "train_steps": 1000, "prediction": "v"}
    data["architecture"]["kwargs"] = kwargs
    assert _refused(data).field == "architecture.kwargs.mean_net.base_channels"
    kwargs["mean_net"]["base_channels"] = 8
    kwargs["train_steps"] = 10**12
    data["diffusion"]["train_steps"] = 10**12
    assert _refused(data).field in ("architecture.kwargs.train_steps", "diffusion.train_steps")


def test_a_network_with_too_many_parameters_is_refused_before_it_is_built():
    # Every setting is in range, but together they make a ~6e11-parameter network (2.4 TB of float32):
    # building it for real would exhaust the memory instead of raising.
    error = _refused(_unet_dict(base_channels=512, depth=8))
    assert error.field == "architecture.kwargs" and "million parameters" in str(error)


def test_the_parameter_count_is_that_of_the_network():
    assert architectures.parameter_count("fnet_unet", TINY) == sum(p.numel() for p in UNet(**TINY).parameters())


def test_bundled_sized_models_are_accepted():
    Manifest.from_dict(_unet_dict(depth=4, base_channels=32, in_channels=13), source="x")
    Manifest.from_dict(_diffusion_dict(base_channels=32, channel_mults=[1, 2, 2], patch_size=2), source="x")


# --- the manifest file itself ----------------------------------------------------------------
@pytest.fixture()
def package(tmp_path: Path) -> Path:
    return save_package(tmp_path / "tiny", _unet_dict(), UNet(**TINY).state_dict())


def test_an_oversized_manifest_is_refused_before_it_is_read(package, monkeypatch):
    manifest = package / MANIFEST_FILE
    data = json.loads(manifest.read_text())
    data["description"] = "x" * (MAX_MANIFEST_BYTES + 10)
    manifest.write_text(json.dumps(data))
    monkeypatch.setattr(Path, "read_text", lambda *a, **k: pytest.fail("an oversized manifest was read"))
    monkeypatch.setattr(Path, "read_bytes", lambda *a, **k: pytest.fail("an oversized manifest was read"))
    with pytest.raises(ManifestError) as info:
        load_package(package)
    assert str(manifest) in str(info.value) and "larger than the 1 MB" in str(info.value)


@pytest.mark.parametrize("depth", [100, 100000])
def test_a_deeply_nested_manifest_is_a_manifest_error(package, depth):
    manifest = package / MANIFEST_FILE
    data = json.loads(manifest.read_text())
    text = json.dumps(data)[:-1] + ', "metrics": ' + "[" * depth + "]" * depth + "}"
    manifest.write_text(text)
    with pytest.raises(ManifestError) as info:
        load_package(package)
    assert str(manifest) in str(info.value) and "nested" in str(info.value)


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"", b"[1, 2", b"1e999999", b"\x00" * 50])
def test_unreadable_manifest_bytes_are_a_manifest_error(package, content):
    manifest = package / MANIFEST_FILE
    manifest.write_bytes(content)
    with pytest.raises(ManifestError) as info:
        load_package(package)
    assert str(manifest) in str(info.value) and "\n" not in str(info.value)
