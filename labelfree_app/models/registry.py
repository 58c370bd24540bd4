"""The model registry: bundled packages (resources/models) plus the user's installed ones.

Listing never fails because of one broken package: it is skipped and described in ``problems``.
Default models per target are kept in ``user_config_dir()/defaults.json``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelfree_app import paths
from labelfree_app.errors import LabelFreeError, ModelError, ModelNotFoundError
from labelfree_app.models.fit import InputFacts, best_fitting, rank_key
from labelfree_app.models.package import (
    MANIFEST_FILE,
    ModelPackage,
    load_package,
    opened_package,
    usual_permissions,
)
from labelfree_app.models.smoke_test import run_smoke_test
from labelfree_app.models.install_lock import installing

DEFAULTS_FILE = "defaults.json"
_ANY_TARGET = "*"  # key in defaults.json for the overall default (target None)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEntry:
    """One installed model, as listed."""

    id: str
    name: str
    version: str
    kind: str
    target: str
    dims: int
    input_channels: int
    source: str  # "bundled" or "user"
    path: Path
    default: bool
    demo: bool
    description: str = ""
    tta: bool = False
    manifest: Any = field(default=None, compare=False, repr=False)  # for fit checks (``models.fit``)
    stored_default: bool = False  # someone set it as a default (``set_default``), not picked by the rule

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON types, for ``labelfree models list --json``."""
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "target": self.target,
            "dims": self.dims,
            "input_channels": self.input_channels,
            "source": self.source,
            "path": str(self.path),
            "default": self.default,
            "demo": self.demo,
            "description": self.description,
            "tta": self.tta,
        }


def _entry(package: ModelPackage, source: str, default: bool = False, stored: bool = False) -> ModelEntry:
    m = package.manifest
    return ModelEntry(
        id=m.id,
        name=m.name,
        version=m.version,
        kind=m.kind,
        target=m.target,
        dims=m.dims,
        input_channels=m.input.channels,
        source=source,
        path=package.origin,
        default=default,
        demo=m.demo,
        description=m.description,
        tta=m.tta,
        manifest=m,
        stored_default=stored,
    )


def _same_target(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


class ModelRegistry:
    """Bundled and user model packages. Folders default to ``paths`` (resolved on each use)."""

    def __init__(self, bundled_dir: Path | None = None, user_dir: Path | None = None) -> None:
        self._bundled_dir = Path(bundled_dir) if bundled_dir is not None else None
        self._user_dir = Path(user_dir) if user_dir is not None else None
        self.problems: list[str] = []

    @property
    def bundled_dir(self) -> Path:
        return self._bundled_dir if self._bundled_dir is not None else paths.bundled_models_dir()

    @property
    def user_dir(self) -> Path:
        return self._user_dir if self._user_dir is not None else paths.user_models_dir()

    @property
    def defaults_path(self) -> Path:
        return paths.user_config_dir() / DEFAULTS_FILE

    # --- listing ---------------------------------------------------------------------------
    def _scan(self) -> list[tuple[ModelPackage, str]]:
        """Every readable package, bundled first; refreshes ``problems``."""
        self.problems = []
        found: list[tuple[ModelPackage, str]] = []
        seen: dict[str, Path] = {}
        for source, folder in (("bundled", self.bundled_dir), ("user", self.user_dir)):
            try:
                candidates = sorted(folder.iterdir()) if folder.is_dir() else []
            except OSError as exc:
                self.problems.append(f"Skipped the models in {folder}: the folder cannot be read "
                                     f"({exc.strerror or exc}); check its permissions.")
                continue
            for candidate in candidates:
                if candidate.name.startswith(".") or not (candidate.is_dir() or candidate.suffix.lower() == ".zip"):
                    continue
                try:
                    package = load_package(candidate)
                except LabelFreeError as exc:
                    self.problems.append(f"Skipped the model at {candidate}: {exc}")
                    continue
                except Exception as exc:  # one bad package must never break the listing
                    # Not foreseen by load_package (which raises LabelFreeError for what it knows); the
                    # traceback goes to the debug log only, never to the user.
                    log.debug("unexpected failure reading the model at %s", candidate, exc_info=True)
                    self.problems.append(f"Skipped the model at {candidate}: it could not be read "
                                         f"({type(exc).__name__}); remove or re-export it.")
                    continue
                model_id = package.manifest.id
                if model_id in seen:
                    self.problems.append(
                        f"Skipped the model at {candidate}: its id '{model_id}' is already used by {seen[model_id]}."
                    )
                    continue
                seen[model_id] = candidate
                found.append((package, source))
        return found

    def list(self) -> list[ModelEntry]:
        """All models (bundled, then user; by folder name within each), ``default`` marked per target."""
        return self._entries(self._scan())

    def _entries(self, found: list[tuple[ModelPackage, str]]) -> list[ModelEntry]:
        packages = [package for package, _ in found]
        default_ids = {self._pick_default(packages, package.manifest.target).manifest.id for package in packages}
        stored_ids = set(self._read_defaults().values())
        return [_entry(package, source, package.manifest.id in default_ids, package.manifest.id in stored_ids)
                for package, source in found]

    def ids(self) -> list[str]:
        return [entry.id for entry in self.list()]

    def entry(self, model_id: str) -> ModelEntry:
        """The listed entry for ``model_id`` (ModelNotFoundError if none)."""
        for entry in self.list():
            if entry.id == model_id:
                return entry
        raise self._not_found(model_id)

    def get(self, model_id: str) -> ModelPackage:
        """The package of an installed model (its weights are checked when used)."""
        for package, _ in self._scan():
            if package.manifest.id == model_id:
                return package
        raise self._not_found(model_id)

    def resolve(self, model: str | Path) -> ModelPackage:
        """An installed model by id, or a package folder / .zip given by path."""
        text = str(model)
        if isinstance(model, Path) or "/" in text or "\\" in text or text.lower().endswith(".zip"):
            return load_package(model)
        try:
            return self.get(str(model))
        except ModelNotFoundError:
            if Path(model).exists():
                return load_package(model)
            raise

    def _not_found(self, model_id: str) -> ModelNotFoundError:
        ids = [package.manifest.id for package, _ in self._scan()]
        known = ", ".join(ids) if ids else "none are installed"
        return ModelNotFoundError(
            f"No installed model has the id '{model_id}' (available: {known}); see 'labelfree models list'."
        )

    # --- installing ------------------------------------------------------------------------
    def install(self, path: str | Path, *, smoke_test: bool = True, overwrite: bool = False) -> ModelEntry:
        """Validate a package folder or .zip, check its weights, run it once, and copy it into the
        user folder (as ``<id>/``, appearing all at once). Returns the new entry."""
        with opened_package(path) as package:  # a zip's extraction is removed afterwards
            with installing(self.user_dir):  # one install at a time: the id check and the copy are one step
                return self._install(package, path, smoke_test=smoke_test, overwrite=overwrite)

    def _install(self, package: ModelPackage, path: str | Path, *, smoke_test: bool, overwrite: bool) -> ModelEntry:
        package.verify()
        model_id = package.manifest.id
        replaced: Path | None = None
        for existing, source in self._scan():
            if existing.manifest.id != model_id:
                continue
            replaced = existing.origin
            if source == "bundled":
                raise ModelError(
                    f"The model id '{model_id}' of {path} belongs to a bundled model; give yours another id.",
                    path=path,
                )
            if not overwrite:
                raise ModelError(
                    f"A model with the id '{model_id}' is already installed; remove it first or allow overwriting.",
                    path=path,
                )
        destination = self.user_dir / model_id
        if destination.exists() and destination != replaced:
            try:
                occupant = load_package(destination).manifest.id
            except LabelFreeError:
                occupant = None  # a broken leftover: replacing it is what the user wants
            if occupant is not None:
                raise ModelError(
                    f"The folder {destination} already holds the model '{occupant}'; remove that model first.",
                    path=destination,
                )
        if smoke_test:
            run_smoke_test(package)
        self.user_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{model_id}.", suffix=".partial", dir=self.user_dir))
        try:
            for name in (MANIFEST_FILE, package.manifest.weights.file):
                shutil.copy2(package.path / name, staging / name)
            copied = load_package(staging)
            copied.verify()
            usual_permissions(staging)  # mkdtemp made it 0700
            old = None
            if destination.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{model_id}.", suffix=".old", dir=self.user_dir))
                old.rmdir()
                os.replace(destination, old)
            os.replace(staging, destination)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            if replaced is not None and replaced.exists() and replaced != destination:
                _delete(replaced)
        except OSError as exc:
            raise ModelError(
                f"The model could not be copied into {self.user_dir} ({exc.strerror or exc}); "
                "check free space and permissions.",
                path=self.user_dir,
            ) from exc
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return self.entry(model_id)

    def remove(self, model_id: str) -> None:
        """Delete a user-installed model (bundled models cannot be removed)."""
        for package, source in self._scan():
            if package.manifest.id != model_id:
                continue
            if source == "bundled":
                raise ModelError(f"The model '{model_id}' is bundled with LabelFree and cannot be removed.")
            _delete(package.origin)
            self._forget_default(model_id)
            return
        raise self._not_found(model_id)

    # --- defaults --------------------------------------------------------------------------
    def _read_defaults(self) -> dict[str, str]:
        try:
            data = json.loads(self.defaults_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            self.problems.append(f"Ignored the default-model settings in {self.defaults_path}: {exc}")
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): v for k, v in data.items() if isinstance(v, str)}

    def _write_defaults(self, defaults: dict[str, str]) -> None:
        path = self.defaults_path
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=".defaults.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(defaults, stream, indent=2, sort_keys=True)
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise

    def _forget_default(self, model_id: str) -> None:
        defaults = self._read_defaults()
        kept = {target: chosen for target, chosen in defaults.items() if chosen != model_id}
        if kept != defaults:
            self._write_defaults(kept)

    def set_default(self, target: str | None, model_id: str) -> None:
        """Make ``model_id`` the default for ``target`` (None: the overall default)."""
        package = self.get(model_id)
        if target is not None and not _same_target(package.manifest.target, target):
            raise ModelError(
                f"The model '{model_id}' predicts '{package.manifest.target}', not '{target}', "
                "so it cannot be the default for that target."
            )
        defaults = {k: v for k, v in self._read_defaults().items() if target is None or not _same_target(k, target)}
        defaults[_ANY_TARGET if target is None else target] = model_id
        self._write_defaults(defaults)

    def _pick_default(self, packages: list[ModelPackage], target: str | None,
                      facts: InputFacts | None = None) -> ModelPackage:
        """The best model for ``target`` that fits the image (``models.fit``): the stored default when
        it fits, else real before demo models, whole z-stack before plane by plane, U-Net before
        diffusion, better held-out r first. Without an image, a single plane is assumed where any
        model takes one."""
        candidates = [p for p in packages if target is None or _same_target(p.manifest.target, target)]
        if not candidates:
            raise ModelNotFoundError(
                f"No installed model predicts '{target}'; see 'labelfree models list' for what is installed."
            )
        preferred = []
        for key, chosen in self._read_defaults().items():
            if key == _ANY_TARGET if target is None else key != _ANY_TARGET and _same_target(key, target):
                preferred.append(chosen)
        if facts is not None:
            return best_fitting(candidates, facts, preferred)
        try:
            return best_fitting(candidates, InputFacts(planes=1), preferred)
        except ModelNotFoundError:  # nothing takes a single plane: the stored default, else the best ranked
            stored = [p for p in candidates if p.manifest.id in preferred]
            return (stored or sorted(candidates, key=lambda p: rank_key(p.manifest, InputFacts(planes=1))))[0]

    def default_for(self, target: str | None = None, facts: InputFacts | None = None) -> ModelEntry:
        """The default model for ``target`` (or overall when None) that fits an image with ``facts``."""
        found = self._scan()
        if not found:
            raise ModelNotFoundError(
                "No models are installed; install one with 'labelfree models install PATH' "
                f"(a model folder or .zip), or put it in {self.user_dir}."
            )
        chosen = self._pick_default([package for package, _ in found], target, facts)
        return next(entry for entry in self._entries(found) if entry.id == chosen.manifest.id)


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
