"""Model packages: manifest validation, atomic save, sha256 checks, zips (and zip-slip)."""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path

import pytest
import torch

from labelfree_app.errors import ManifestError, ModelError, WeightsIntegrityError
from labelfree_app.models.manifest import Manifest
from labelfree_app.models.package import (
    MANIFEST_FILE,
    WEIGHTS_FILE,
    ModelPackage,
    load_package,
    save_package,
    sha256_of_file,
    unet_manifest,
)
from labelfree_app.models.unet import UNet

TINY = {"dims": 2, "in_channels": 1, "out_channels": 1, "depth": 2, "base_channels": 4}


def tiny_net(seed: int = 0, **overrides) -> UNet:
    torch.manual_seed(seed)
    return UNet(**{**TINY, **overrides})


def tiny_manifest(**fields) -> dict:
    return unet_manifest(TINY, model_id="tiny-2d", name="Tiny", target="DNA", tile_shape=[32, 32], halo=[4, 4], **fields)


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[Path, UNet]:
    net = tiny_net()
    return save_package(tmp_path / "tiny", tiny_manifest(), net.state_dict()), net


def full_manifest_dict() -> dict:
    d = tiny_manifest(description="d", license="MIT", attribution="me", demo=True, tta=True,
                      metrics={"pearson_r": 0.5}, training={"data": "x", "steps": 3, "seconds": 1.5,
                                                            "device": "cpu", "settings": {"lr": 1e-3}})
    d["weights"] = {"file": WEIGHTS_FILE, "sha256": "ab" * 32}
    return d


# --- save / load ----------------------------------------------------------------------------
def test_save_then_load_round_trips_manifest_and_weights(saved):
    path, net = saved
    assert sorted(p.name for p in path.iterdir()) == [MANIFEST_FILE, WEIGHTS_FILE]
    package = load_package(path)
    assert isinstance(package, ModelPackage) and package.path == path
    assert package.manifest.weights.sha256 == sha256_of_file(path / WEIGHTS_FILE)
    package.verify()
    loaded = package.state_dict()
    for key, value in net.state_dict().items():
        assert torch.equal(loaded[key], value), key
    rebuilt = package.build_network()
    assert not rebuilt.training
    x = torch.randn(2, 1, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(rebuilt(x), net.eval()(x))


def test_manifest_dict_round_trip_is_lossless():
    data = full_manifest_dict()
    manifest = Manifest.from_dict(data, source="m.json")
    again = Manifest.from_dict(manifest.to_dict())
    assert again == manifest
    assert manifest.to_dict()["training"]["settings"] == {"lr": 1e-3}
    assert manifest.tiling.tile_shape == (32, 32) and manifest.demo and manifest.tta


def test_diffusion_settings_are_read_with_defaults():
    data = full_manifest_dict()
    data["kind"] = "diffusion"
    data["diffusion"] = {"sampler": "ddpm", "steps": 50}
    manifest = Manifest.from_dict(data)
    assert manifest.diffusion.sampler == "ddpm" and manifest.diffusion.steps == 50
    assert manifest.diffusion.schedule == "cosine" and manifest.diffusion.train_steps == 1000


def test_save_refuses_to_overwrite_unless_asked(saved):
    path, _ = saved
    first_sha = sha256_of_file(path / WEIGHTS_FILE)
    with pytest.raises(ModelError, match="already exists"):
        save_package(path, tiny_manifest(), tiny_net(seed=1).state_dict())
    assert sha256_of_file(path / WEIGHTS_FILE) == first_sha
    save_package(path, tiny_manifest(), tiny_net(seed=1).state_dict(), overwrite=True)
    assert sha256_of_file(path / WEIGHTS_FILE) != first_sha
    load_package(path).verify()
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny"], "no temp folders left behind"


def test_save_with_a_bad_manifest_writes_nothing(tmp_path):
    bad = tiny_manifest()
    del bad["target"]
    with pytest.raises(ManifestError) as info:
        save_package(tmp_path / "out", bad, tiny_net().state_dict())
    assert info.value.field == "target"
    assert list(tmp_path.iterdir()) == []


def test_save_accepts_a_manifest_object(saved, tmp_path):
    path, net = saved
    manifest = load_package(path).manifest
    copy_path = save_package(tmp_path / "copy", manifest, net.state_dict())
    assert load_package(copy_path).manifest == manifest


# --- integrity ------------------------------------------------------------------------------
def test_tampered_weights_are_refused(saved):
    path, _ = saved
    weights = path / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    package = load_package(path)
    for use in (package.verify, package.state_dict, package.build_network):
        with pytest.raises(WeightsIntegrityError) as info:
            use()
        assert str(weights) in str(info.value)


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path):
    wider = tiny_net(base_channels=8)
    path = save_package(tmp_path / "p", tiny_manifest(), wider.state_dict())
    with pytest.raises(ModelError, match="do not fit"):
        load_package(path).build_network()


def test_missing_manifest_or_weights_is_a_clear_error(saved, tmp_path):
    path, _ = saved
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="has no manifest.json"):
        load_package(empty)
    (path / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelError, match="no weights file"):
        load_package(path)
    with pytest.raises(ModelError, match="No model package found"):
        load_package(tmp_path / "does-not-exist")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ModelError, match="neither a model package folder nor a .zip"):
        load_package(text)


def test_invalid_json_names_the_file(saved):
    path, _ = saved
    (path / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ManifestError) as info:
        load_package(path)
    assert str(path / MANIFEST_FILE) in str(info.value) and "not valid JSON" in str(info.value)


# --- validation -----------------------------------------------------------------------------
REQUIRED_FIELDS = [
    "format_version", "id", "name", "version", "kind", "target", "input_modality", "architecture",
    "architecture.id", "architecture.kwargs", "dims", "input", "input.axes", "input.channels", "output",
    "output.axes", "output.channels", "normalization", "normalization.input", "normalization.input.method",
    "tiling", "tiling.tile_shape", "weights", "weights.sha256",
]


def _delete(data: dict, dotted: str) -> None:
    *parents, key = dotted.split(".")
    for part in parents:
        data = data[part]
    del data[key]


def _set(data: dict, dotted: str, value) -> None:
    *parents, key = dotted.split(".")
    for part in parents:
        data = data[part]
    data[key] = value


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_each_missing_required_field_is_refused_naming_it(saved, field):
    path, _ = saved
    manifest_path = path / MANIFEST_FILE
    data = json.loads(manifest_path.read_text())
    _delete(data, field)
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(ManifestError) as info:
        load_package(path)
    assert info.value.field == field
    assert f"'{field}'" in str(info.value) and str(manifest_path) in str(info.value)


def test_unknown_architecture_is_refused_naming_the_field(saved):
    path, _ = saved
    manifest_path = path / MANIFEST_FILE
    data = json.loads(manifest_path.read_text())
    data["architecture"]["id"] = "fnet.nn_modules.fnet_nn_3d.Net"
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(ManifestError) as info:
        load_package(path)
    assert info.value.field == "architecture.id"
    assert "architecture.id" in str(info.value) and "fnet_unet" in str(info.value)


BAD_VALUES = [
    ("format_version", 2, "format_version"),
    ("id", "Has Spaces", "id"),
    ("id", "../escape", "id"),
    ("kind", "gan", "kind"),
    ("dims", 4, "dims"),
    ("dims", True, "dims"),
    ("name", "  ", "name"),
    ("input.channels", 0, "input.channels"),
    ("input.channels", "1", "input.channels"),
    ("input.axes", "YX", "input.axes"),
    ("input.axes", "CZYX", "input.axes"),
    ("input.channel_names", ["a", "b"], "input.channel_names"),
    ("input.z_as_channels", "yes", "input.z_as_channels"),
    ("architecture.kwargs", {**TINY, "in_channels": 3}, "architecture.kwargs"),
    ("architecture.kwargs", {**TINY, "dims": 3}, "architecture.kwargs"),
    ("normalization.input.method", "histogram", "normalization.input.method"),
    ("normalization.output", {"method": "zscore", "params": []}, "normalization.output.params"),
    ("tiling.tile_shape", [32, 32, 32], "tiling.tile_shape"),
    ("tiling.tile_shape", [30, 32], "tiling.tile_shape"),
    ("tiling.halo", [16, 4], "tiling.halo"),
    ("weights.sha256", "abc", "weights.sha256"),
    ("weights.file", "../weights.safetensors", "weights.file"),
    ("diffusion", {"sampler": "euler"}, "diffusion.sampler"),
    ("training", {"steps": -1}, "training.steps"),
    ("demo", "no", "demo"),
    ("metrics", [1, 2], "metrics"),
]


@pytest.mark.parametrize(("field", "value", "reported"), BAD_VALUES)
def test_bad_values_are_refused_naming_the_field(field, value, reported):
    data = full_manifest_dict()
    _set(data, field, value)
    with pytest.raises(ManifestError) as info:
        Manifest.from_dict(data, source="/pkg/manifest.json")
    assert info.value.field == reported
    assert f"'{reported}'" in str(info.value) and "/pkg/manifest.json" in str(info.value)


def test_diffusion_model_needs_diffusion_settings():
    data = full_manifest_dict()
    data["kind"] = "diffusion"
    with pytest.raises(ManifestError) as info:
        Manifest.from_dict(data)
    assert info.value.field == "diffusion"


def test_from_dict_does_not_share_state_with_its_input():
    data = full_manifest_dict()
    original = copy.deepcopy(data)
    manifest = Manifest.from_dict(data)
    manifest.to_dict()["architecture"]["kwargs"]["depth"] = 99
    assert data == original and manifest.architecture.kwargs["depth"] == 2


# --- zips -----------------------------------------------------------------------------------
def _zip_folder(folder: Path, zip_path: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(zip_path, "w") as archive:
        for file in folder.iterdir():
            archive.write(file, prefix + file.name)
    return zip_path


@pytest.mark.parametrize("prefix", ["", "tiny-2d/"])
def test_zip_round_trip_at_top_level_or_in_one_folder(saved, tmp_path, labelfree_home, prefix):
    path, net = saved
    zip_path = _zip_folder(path, tmp_path / "tiny.zip", prefix)
    package = load_package(zip_path)
    assert package.origin == zip_path
    assert package.path.resolve().is_relative_to(labelfree_home.resolve()), "extracted under the cache"
    assert package.manifest == load_package(path).manifest
    x = torch.randn(1, 1, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(package.build_network()(x), net.eval()(x))
    assert load_package(zip_path).path == package.path, "a second open reuses the extraction"


@pytest.mark.parametrize("evil_name", ["../evil.txt", "tiny/../../evil.txt", "/tmp/evil.txt", "..\\evil.txt"])
def test_zip_slip_entries_are_refused(saved, tmp_path, labelfree_home, evil_name):
    path, _ = saved
    zip_path = _zip_folder(path, tmp_path / "evil.zip")
    with zipfile.ZipFile(zip_path, "a") as archive:
        archive.writestr(evil_name, "pwned")
    with pytest.raises(ModelError, match="unsafe entry"):
        load_package(zip_path)
    assert not (tmp_path / "evil.txt").exists()
    assert not list(labelfree_home.rglob("evil.txt"))


def test_zip_without_a_manifest_is_refused(tmp_path):
    zip_path = tmp_path / "empty.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("a/b/manifest.json", "{}")
    with pytest.raises(ModelError, match="no manifest.json"):
        load_package(zip_path)


def test_damaged_zip_is_refused(saved, tmp_path):
    path, _ = saved
    zip_path = _zip_folder(path, tmp_path / "tiny.zip")
    data = zip_path.read_bytes()
    zip_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError):
        load_package(zip_path)
