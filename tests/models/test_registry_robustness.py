"""One bad package in the user folder never breaks listing or the other models; installs leave
normal permissions and nothing extracted behind."""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path

import pytest

from labelfree_app import paths
from labelfree_app.errors import WeightsIntegrityError
from labelfree_app.models import parameter_counts
from labelfree_app.models.package import MANIFEST_FILE
from labelfree_app.models.registry import ModelRegistry
from tests.models.test_registry import make_package


@pytest.fixture()
def registry(tmp_path: Path) -> ModelRegistry:
    registry = ModelRegistry(bundled_dir=tmp_path / "no-bundled")
    registry.install(make_package(tmp_path / "downloads", "good"))
    return registry


def _bad_manifest(folder: Path, text: str | bytes) -> Path:
    folder.mkdir(parents=True)
    target = folder / MANIFEST_FILE
    target.write_bytes(text if isinstance(text, bytes) else text.encode())
    (folder / "weights.safetensors").write_bytes(b"")
    return folder


BAD_MANIFESTS = {
    "deeply-nested": "[" * 200000 + "]" * 200000,
    "nested-object": '{"format_version": 1, "metrics": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}",
    "not-utf8": b"\xff\xfe\xfa\x00",
    "not-json": "{nope",
    "huge-kwargs": None,  # filled in below: a valid manifest asking for base_channels 100000
}


def _huge_kwargs_manifest(registry: ModelRegistry) -> str:
    data = json.loads((registry.user_dir / "good" / MANIFEST_FILE).read_text())
    data["id"] = "huge"
    data["architecture"]["kwargs"]["base_channels"] = 100000
    return json.dumps(data)


@pytest.mark.parametrize("kind", sorted(BAD_MANIFESTS))
def test_a_bad_package_is_skipped_with_a_problem_naming_it(registry, kind):
    text = BAD_MANIFESTS[kind] if kind != "huge-kwargs" else _huge_kwargs_manifest(registry)
    bad = _bad_manifest(registry.user_dir / f"bad-{kind}", text)
    assert [e.id for e in registry.list()] == ["good"]
    assert len(registry.problems) == 1 and str(bad) in registry.problems[0]
    assert registry.get("good").manifest.id == "good", "other models still load"


def test_an_oversized_manifest_is_skipped_without_reading_it(registry):
    bad = registry.user_dir / "big"
    bad.mkdir()
    with open(bad / MANIFEST_FILE, "wb") as handle:
        handle.truncate(200 * 1024 * 1024)  # sparse: 200 MB on paper, nothing on disk
    assert [e.id for e in registry.list()] == ["good"]
    assert "larger than the 1 MB" in registry.problems[0] and str(bad) in registry.problems[0]


def test_an_unreadable_package_folder_is_skipped(registry):
    if os.geteuid() == 0:
        pytest.skip("root reads every folder")
    locked = registry.user_dir / "locked"
    locked.mkdir()
    (locked / MANIFEST_FILE).write_text("{}")
    locked.chmod(0)
    try:
        assert [e.id for e in registry.list()] == ["good"]
        assert any(str(locked) in problem for problem in registry.problems)
    finally:
        locked.chmod(0o755)


def test_a_damaged_zip_in_the_user_folder_is_skipped(registry):
    (registry.user_dir / "broken.zip").write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with zipfile.ZipFile(registry.user_dir / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "no manifest here")
    assert [e.id for e in registry.list()] == ["good"]
    assert any("other.zip" in problem for problem in registry.problems)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _zip(folder: Path, zip_path: Path) -> Path:
    with zipfile.ZipFile(zip_path, "w") as archive:
        for file in folder.iterdir():
            archive.write(file, f"{folder.name}/{file.name}")
    return zip_path


@pytest.mark.parametrize("as_zip", [False, True])
def test_installed_models_get_the_permissions_of_a_normal_copy(tmp_path, as_zip):
    umask = os.umask(0o022)
    try:
        source = make_package(tmp_path / "downloads", "perm")
        if as_zip:
            source = _zip(source, tmp_path / "perm.zip")
        entry = ModelRegistry(bundled_dir=tmp_path / "none").install(source)
    finally:
        os.umask(umask)
    assert _mode(entry.path) == 0o755
    assert {p.name: _mode(p) for p in entry.path.iterdir()} == {MANIFEST_FILE: 0o644, "weights.safetensors": 0o644}


def test_installing_a_zip_leaves_nothing_extracted_in_the_cache(tmp_path):
    source = _zip(make_package(tmp_path / "downloads", "zipped"), tmp_path / "zipped.zip")
    entry = ModelRegistry(bundled_dir=tmp_path / "none").install(source)
    assert entry.path.is_dir()
    assert not _cached_files(), "extracted entries left in the cache"
    assert not [p for p in entry.path.parent.iterdir() if p.name != "zipped"], "temp folders left behind"


def test_a_zip_that_fails_to_install_leaves_nothing_extracted(tmp_path):
    folder = make_package(tmp_path / "downloads", "tampered")
    weights = folder / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")
    source = _zip(folder, tmp_path / "tampered.zip")
    with pytest.raises(WeightsIntegrityError):
        ModelRegistry(bundled_dir=tmp_path / "none").install(source)
    assert not _cached_files()


def _cached_files() -> list[Path]:
    """Files in the user cache other than the remembered parameter counts (reading a manifest keeps those)."""
    return [p for p in paths.user_cache_dir().rglob("*") if p.is_file() and p.name != parameter_counts.CACHE_FILE]


def test_an_unforeseen_failure_in_one_package_lands_in_problems(registry, monkeypatch, capsys):
    import labelfree_app.models.registry as registry_module

    make_package(registry.user_dir, "odd")
    real = registry_module.load_package

    def flaky(path, **kwargs):
        if Path(path).name == "odd":
            raise RecursionError("maximum recursion depth exceeded")
        return real(path, **kwargs)

    monkeypatch.setattr(registry_module, "load_package", flaky)
    assert [e.id for e in registry.list()] == ["good"]
    (problem,) = registry.problems
    assert str(registry.user_dir / "odd") in problem and problem.endswith("remove or re-export it.")
    assert "Traceback" not in capsys.readouterr().err
