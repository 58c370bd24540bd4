"""The model registry: user folders under LABELFREE_HOME, install/list/remove, defaults, problems."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch

from labelfree_app import paths
from labelfree_app.errors import ModelError, ModelNotFoundError, WeightsIntegrityError
from labelfree_app.models.package import MANIFEST_FILE, WEIGHTS_FILE, load_package, save_package, unet_manifest
from labelfree_app.models.registry import ModelEntry, ModelRegistry
from labelfree_app.models.unet import UNet

TINY = {"dims": 2, "in_channels": 1, "out_channels": 1, "depth": 2, "base_channels": 4}


def make_package(folder: Path, model_id: str, target: str = "DNA", *, demo: bool = False, seed: int = 0,
                 net: UNet | None = None, **fields) -> Path:
    torch.manual_seed(seed)
    net = net or UNet(**TINY)
    manifest = unet_manifest(net.architecture_kwargs(), model_id=model_id, name=model_id.title(), target=target,
                             tile_shape=[32, 32], halo=[4, 4], demo=demo, **fields)
    return save_package(folder / model_id, manifest, net.state_dict())


@pytest.fixture()
def sources(tmp_path: Path) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture()
def bundled(tmp_path: Path) -> Path:
    folder = tmp_path / "bundled"
    make_package(folder, "bundled-dna", "DNA", demo=True)
    return folder


def test_default_folders_are_under_labelfree_home(labelfree_home, sources):
    registry = ModelRegistry()
    home = labelfree_home.resolve()
    assert registry.user_dir.resolve().is_relative_to(home)
    assert registry.defaults_path.resolve().is_relative_to(home)
    assert registry.bundled_dir == paths.bundled_models_dir()
    entry = ModelRegistry(bundled_dir=sources / "none").install(make_package(sources, "mine"))
    assert entry.path.resolve().is_relative_to(home)
    assert entry.path == paths.user_models_dir() / "mine"


def test_install_list_get_remove(bundled, sources):
    registry = ModelRegistry(bundled_dir=bundled)
    entry = registry.install(make_package(sources, "user-dna"))
    assert isinstance(entry, ModelEntry)
    assert (entry.id, entry.source, entry.kind, entry.dims, entry.input_channels) == ("user-dna", "user", "unet", 2, 1)
    assert sorted(p.name for p in entry.path.iterdir()) == [MANIFEST_FILE, WEIGHTS_FILE]
    listed = registry.list()
    assert [(e.id, e.source) for e in listed] == [("bundled-dna", "bundled"), ("user-dna", "user")]
    assert registry.problems == []
    package = registry.get("user-dna")
    package.verify()
    assert package.manifest.id == "user-dna"
    registry.remove("user-dna")
    assert [e.id for e in registry.list()] == ["bundled-dna"]
    assert not entry.path.exists()
    assert not [p for p in registry.user_dir.iterdir()], "no temp folders left behind"


def test_install_from_a_zip(sources):
    folder = make_package(sources, "zipped")
    zip_path = sources / "zipped.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        for file in folder.iterdir():
            archive.write(file, f"zipped/{file.name}")
    entry = ModelRegistry(bundled_dir=sources / "none").install(zip_path)
    assert entry.id == "zipped" and entry.path.is_dir()
    load_package(entry.path).verify()


def test_json_listing_has_the_documented_keys(bundled, sources):
    registry = ModelRegistry(bundled_dir=bundled)
    registry.install(make_package(sources, "user-dna"))
    rows = json.loads(json.dumps([e.to_json_dict() for e in registry.list()]))
    assert {"id", "kind", "target", "dims", "input_channels", "default"} <= set(rows[0])
    assert [(r["id"], r["kind"], r["default"]) for r in rows] == [("bundled-dna", "unet", False), ("user-dna", "unet", True)]


def test_tampered_package_is_not_installed(sources):
    folder = make_package(sources, "tampered")
    weights = folder / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    registry = ModelRegistry(bundled_dir=sources / "none")
    with pytest.raises(WeightsIntegrityError):
        registry.install(folder)
    assert registry.list() == []


def test_smoke_test_refuses_a_network_that_gives_non_finite_output(sources):
    torch.manual_seed(0)
    net = UNet(**TINY)
    with torch.no_grad():
        net.head.bias.fill_(float("nan"))
    folder = make_package(sources, "broken-output", net=net)
    registry = ModelRegistry(bundled_dir=sources / "none")
    with pytest.raises(ModelError, match="non-finite"):
        registry.install(folder)
    assert registry.list() == []
    assert registry.install(folder, smoke_test=False).id == "broken-output"


def test_installing_an_existing_id_needs_overwrite(sources, bundled):
    registry = ModelRegistry(bundled_dir=bundled)
    registry.install(make_package(sources, "dup", seed=0))
    newer = make_package(sources / "v2", "dup", seed=1)
    with pytest.raises(ModelError, match="already installed"):
        registry.install(newer)
    entry = registry.install(newer, overwrite=True)
    assert load_package(entry.path).manifest.weights.sha256 == load_package(newer).manifest.weights.sha256
    assert [e.id for e in registry.list()] == ["bundled-dna", "dup"]
    with pytest.raises(ModelError, match="bundled model"):
        registry.install(make_package(sources / "v3", "bundled-dna"), overwrite=True)


def test_bundled_models_cannot_be_removed(bundled):
    registry = ModelRegistry(bundled_dir=bundled)
    with pytest.raises(ModelError, match="bundled"):
        registry.remove("bundled-dna")
    assert (bundled / "bundled-dna").is_dir()


def test_unknown_id_lists_the_available_ones(bundled):
    registry = ModelRegistry(bundled_dir=bundled)
    with pytest.raises(ModelNotFoundError, match="bundled-dna"):
        registry.get("nope")
    with pytest.raises(ModelNotFoundError):
        registry.remove("nope")


def test_broken_user_package_is_skipped_and_reported(bundled, sources):
    registry = ModelRegistry(bundled_dir=bundled)
    registry.install(make_package(sources, "good"))
    broken = registry.user_dir / "broken"
    broken.mkdir()
    (broken / MANIFEST_FILE).write_text('{"format_version": 1, "id": "broken"}')
    (registry.user_dir / "stray.txt").write_text("not a model")
    assert [e.id for e in registry.list()] == ["bundled-dna", "good"]
    assert len(registry.problems) == 1
    assert str(broken) in registry.problems[0] and "missing the required field" in registry.problems[0]


def test_default_prefers_real_models_and_nuclei_when_no_target_is_asked(bundled, sources):
    registry = ModelRegistry(bundled_dir=bundled)
    assert registry.default_for("DNA").id == "bundled-dna", "only a demo model: it is the default"
    registry.install(make_package(sources, "real-dna", "DNA"))
    registry.install(make_package(sources, "actin", "Actin"))
    assert registry.default_for("DNA").id == "real-dna"
    assert registry.default_for("dna").id == "real-dna", "targets match case-insensitively"
    assert registry.default_for("Actin").id == "actin"
    assert registry.default_for().id == "real-dna", "overall: a real model, nuclei (DNA) before other targets"
    with pytest.raises(ModelNotFoundError):
        registry.default_for("Membrane")


def test_default_for_reads_the_model_folders_once_and_returns_the_listed_entry(bundled, sources, monkeypatch):
    from labelfree_app.models import registry as registry_module

    registry = ModelRegistry(bundled_dir=bundled)
    registry.install(make_package(sources, "real-dna", "DNA"))
    loads: list[Path] = []
    real_load = registry_module.load_package
    monkeypatch.setattr(registry_module, "load_package", lambda path: loads.append(Path(path)) or real_load(path))
    entry = registry.default_for("DNA")
    assert len(loads) == 2, loads  # bundled-dna and real-dna, each read once
    assert entry == next(e for e in registry.list() if e.id == "real-dna") and entry.default


def test_set_default_is_stored_and_survives_a_new_registry(bundled, sources):
    registry = ModelRegistry(bundled_dir=bundled)
    registry.install(make_package(sources, "real-dna", "DNA"))
    registry.set_default("DNA", "bundled-dna")
    assert ModelRegistry(bundled_dir=bundled).default_for("DNA").id == "bundled-dna"
    flags = {e.id: e.default for e in registry.list()}
    assert flags == {"bundled-dna": True, "real-dna": False}
    assert json.loads(registry.defaults_path.read_text()) == {"DNA": "bundled-dna"}
    registry.set_default(None, "real-dna")
    assert registry.default_for().id == "real-dna"
    with pytest.raises(ModelError, match="predicts 'DNA'"):
        registry.set_default("Actin", "real-dna")


def test_removing_the_default_falls_back(bundled, sources):
    registry = ModelRegistry(bundled_dir=bundled)
    registry.install(make_package(sources, "a-dna", "DNA"))
    registry.install(make_package(sources, "b-dna", "DNA"))
    registry.set_default("DNA", "b-dna")
    registry.remove("b-dna")
    assert registry.default_for("DNA").id == "a-dna"
    assert "b-dna" not in json.dumps(json.loads(registry.defaults_path.read_text()))


def test_no_models_says_how_to_install_one(tmp_path):
    registry = ModelRegistry(bundled_dir=tmp_path / "none", user_dir=tmp_path / "none2")
    assert registry.list() == []
    with pytest.raises(ModelNotFoundError, match="labelfree models install"):
        registry.default_for()


def test_resolve_takes_an_id_or_a_path(bundled, sources):
    registry = ModelRegistry(bundled_dir=bundled)
    assert registry.resolve("bundled-dna").manifest.id == "bundled-dna"
    folder = make_package(sources, "elsewhere")
    assert registry.resolve(folder).manifest.id == "elsewhere"
    assert registry.resolve(str(folder)).manifest.id == "elsewhere"


def test_a_diffusion_package_passes_the_smoke_test(sources):
    denoiser_module = pytest.importorskip("labelfree_app.models.diffusion.denoiser")
    torch.manual_seed(0)
    kwargs = {"dims": 2, "in_channels": 1, "out_channels": 1, "base_channels": 8, "channel_mults": [1, 2]}
    net = denoiser_module.ConditionalDenoiser(**kwargs)
    manifest = unet_manifest({"dims": 2}, model_id="diff", name="Diff", target="DNA", tile_shape=[32, 32],
                             halo=[4, 4], kind="diffusion",
                             architecture={"id": "cond_denoiser_unet", "kwargs": kwargs},
                             diffusion={"train_steps": 100, "steps": 10})
    folder = save_package(sources / "diff", manifest, net.state_dict())
    entry = ModelRegistry(bundled_dir=sources / "none").install(folder)
    assert (entry.kind, entry.id) == ("diffusion", "diff")


def test_install_replaces_a_broken_leftover_folder_of_the_same_name(sources):
    registry = ModelRegistry(bundled_dir=sources / "none")
    leftover = registry.user_dir / "fixme"
    leftover.mkdir(parents=True)
    (leftover / MANIFEST_FILE).write_text("{broken")
    assert registry.list() == [] and len(registry.problems) == 1
    registry.install(make_package(sources, "fixme"))
    assert [e.id for e in registry.list()] == ["fixme"] and registry.problems == []


def test_without_a_stored_default_a_unet_is_preferred_over_a_diffusion_model(tmp_path, sources):
    from tests.factories import make_diffusion_package, make_unet_package

    registry = ModelRegistry(bundled_dir=tmp_path / "none")
    registry.install(make_diffusion_package(sources, model_id="a-diffusion").path)
    registry.install(make_unet_package(sources, model_id="b-unet").path)
    assert registry.default_for("DNA").id == "b-unet"
    registry.set_default("DNA", "a-diffusion")
    assert registry.default_for("DNA").id == "a-diffusion"
