"""Model packages: a folder (or a .zip of it) with manifest.json and weights.safetensors.

``save_package`` writes one atomically, ``load_package`` opens one (extracting a zip safely into the
cache), and ``ModelPackage`` checks the weights against the manifest's sha256 before they are used.
A package is data only: the network comes from the fixed architecture table, never from the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from labelfree_app import paths
from labelfree_app.errors import ManifestError, ModelError, WeightsIntegrityError
from labelfree_app.models import architectures
from labelfree_app.models.manifest import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    WEIGHTS_FILE,
    Manifest,
)
from labelfree_app.models.package_zip import extract_zip

if TYPE_CHECKING:  # torch is imported where weights become tensors, never to open or verify a package
    import torch
    from torch import nn

# Re-exported so callers need one import for everything about packages.
__all__ = [
    "MANIFEST_FILE",
    "WEIGHTS_FILE",
    "Manifest",
    "ModelPackage",
    "load_package",
    "opened_package",
    "save_package",
    "sha256_of_file",
    "unet_manifest",
]



def sha256_of_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class ModelPackage:
    """An opened model package. ``path`` is the folder holding manifest.json (for a zip, the folder
    it was extracted to); ``origin`` is what was opened (the folder or the zip). Hashable by identity."""

    path: Path
    manifest: Manifest
    origin: Path

    @property
    def weights_path(self) -> Path:
        return self.path / self.manifest.weights.file

    def _verified_weight_bytes(self) -> bytes:
        try:
            data = self.weights_path.read_bytes()
        except OSError as exc:
            raise ModelError(
                f"The weights file {self.weights_path} cannot be read ({exc.strerror or exc}); reinstall the model.",
                path=self.weights_path,
            ) from exc
        if hashlib.sha256(data).hexdigest() != self.manifest.weights.sha256:
            raise WeightsIntegrityError(
                f"The weights file {self.weights_path} does not match the sha256 in its manifest "
                "(it was changed or damaged); reinstall the model.",
                path=self.weights_path,
            )
        return data

    def verify(self) -> None:
        """Check the weights against the manifest's sha256 (WeightsIntegrityError on mismatch)."""
        self._verified_weight_bytes()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The verified weights as CPU tensors (the bytes hashed are the bytes loaded)."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        data = self._verified_weight_bytes()
        try:
            return load(data)
        except (SafetensorError, ValueError) as exc:
            raise ModelError(
                f"The weights file {self.weights_path} is not a valid safetensors file ({exc}); re-export the model.",
                path=self.weights_path,
            ) from exc

    def build_network(self, device: torch.device | str = "cpu") -> nn.Module:
        """The network from the architecture table with the verified weights loaded, in eval mode."""
        arch = self.manifest.architecture
        manifest_path = self.path / MANIFEST_FILE
        network = architectures.build_network(arch.id, arch.kwargs, source=manifest_path)
        try:
            network.load_state_dict(self.state_dict(), strict=True)
        except RuntimeError as exc:
            raise ModelError(
                f"The weights in {self.weights_path} do not fit the architecture '{arch.id}' described in "
                f"{manifest_path}; the package is inconsistent, re-export it.",
                path=self.weights_path,
            ) from exc
        return network.to(device).eval()


def load_package(path: str | Path, *, extract_to: Path | None = None) -> ModelPackage:
    """Open a model package folder or .zip and validate its manifest (the weights are checked on use).

    A zip is extracted into the cache (reused by later opens), or into the empty folder ``extract_to``.
    """
    origin = Path(path).expanduser()
    if origin.is_dir():
        folder = origin
    elif origin.is_file() and zipfile.is_zipfile(origin):
        folder = extract_zip(origin, extract_to)
    elif origin.exists():
        raise ModelError(
            f"{origin} is neither a model package folder nor a .zip of one; "
            f"give a folder holding {MANIFEST_FILE} and {WEIGHTS_FILE}.",
            path=origin,
        )
    else:
        raise ModelError(f"No model package found at {origin}; check the path.", path=origin)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ModelError(
            f"The model package {origin} has no {MANIFEST_FILE}; a model package is a folder "
            f"holding {MANIFEST_FILE} and {WEIGHTS_FILE}.",
            path=origin,
        )
    manifest = Manifest.from_dict(_read_json(manifest_path), source=manifest_path)
    package = ModelPackage(path=folder, manifest=manifest, origin=origin)
    if not package.weights_path.is_file():
        raise ModelError(
            f"The model package {origin} has no weights file '{manifest.weights.file}'; "
            "copy it next to the manifest or re-export the model.",
            path=origin,
        )
    return package


@contextmanager
def opened_package(path: str | Path) -> Iterator[ModelPackage]:
    """``load_package``, but a zip is extracted into a temporary folder that is removed on exit
    (for installing: the installed copy is what stays, not a second one in the cache)."""
    origin = Path(path).expanduser()
    if not (origin.is_file() and zipfile.is_zipfile(origin)):
        yield load_package(origin)
        return
    cache = paths.user_cache_dir() / "model-packages"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=".install.", dir=cache))
    except OSError as exc:
        raise ModelError(f"The zip {origin} could not be unpacked into {cache} ({exc.strerror or exc}).",
                         path=origin) from exc
    try:
        yield load_package(origin, extract_to=temp / "package")
    finally:
        shutil.rmtree(temp, ignore_errors=True)


_MAX_JSON_NESTING = 32  # a real manifest nests 4 levels; deeper ones could exhaust the stack later


def _read_json(manifest_path: Path) -> Any:
    """The parsed manifest; ManifestError for a file too big, unreadable, not JSON, or nested absurdly deep."""
    def refuse(problem: str) -> ManifestError:
        return ManifestError(f"The model manifest {manifest_path} {problem}.", path=manifest_path)

    try:
        size = manifest_path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise refuse(f"is {size / 1024**2:,.0f} MB, larger than the {MAX_MANIFEST_BYTES // 1024**2} MB "
                         "a manifest may be, so it was not read; fix or re-export it")
        with open(manifest_path, "rb") as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)  # the file may have grown since stat()
    except OSError as exc:
        raise refuse(f"cannot be read ({exc.strerror or exc}); check its permissions") from exc
    if len(raw) > MAX_MANIFEST_BYTES:
        raise refuse(f"is larger than the {MAX_MANIFEST_BYTES // 1024**2} MB a manifest may be; fix or re-export it")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse("is not UTF-8 text; fix or re-export it") from exc
    if _nesting_depth(text) > _MAX_JSON_NESTING:
        raise refuse(f"is nested more than {_MAX_JSON_NESTING} levels deep, which no manifest is; fix or re-export it")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise refuse(f"is not valid JSON (line {exc.lineno}: {exc.msg}); fix or re-export it") from exc
    except (RecursionError, ValueError) as exc:
        raise refuse("is not valid JSON; fix or re-export it") from exc


def _nesting_depth(text: str) -> int:
    """The deepest bracket nesting outside strings, found without recursion (json.loads recurses)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def unet_manifest(
    arch_kwargs: Mapping[str, Any],
    *,
    model_id: str,
    name: str,
    target: str,
    version: str = "0.1.0",
    input_modality: str = "bright-field",
    tile_shape: list[int] | None = None,
    halo: list[int] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The manifest dict of an ``fnet_unet`` model (weights left out: ``save_package`` adds them).

    ``arch_kwargs`` are ``UNet``'s keyword arguments; ``fields`` override or add top-level fields.
    """
    dims = int(arch_kwargs.get("dims", 2))
    axes = "CYX" if dims == 2 else "CZYX"
    default_tile, default_halo = ([256, 256], [32, 32]) if dims == 2 else ([32, 128, 128], [8, 32, 32])
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "id": model_id,
        "name": name,
        "version": version,
        "kind": "unet",
        "target": target,
        "input_modality": input_modality,
        "architecture": {"id": "fnet_unet", "kwargs": dict(arch_kwargs)},
        "dims": dims,
        "input": {"axes": axes, "channels": int(arch_kwargs.get("in_channels", 1))},
        "output": {"axes": axes, "channels": int(arch_kwargs.get("out_channels", 1))},
        "normalization": {"input": {"method": "zscore", "params": {}}, "output": None},
        "tiling": {"tile_shape": list(tile_shape or default_tile), "halo": list(halo or default_halo)},
    }
    manifest.update(fields)
    return manifest


def save_package(
    out_dir: str | Path,
    manifest: Manifest | Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``out_dir`` with weights.safetensors and manifest.json (its sha256 filled in).

    ``manifest`` is a Manifest or its dict form; ``weights`` and ``format_version`` may be left out.
    The package appears all at once (built in a temp folder beside it, then renamed); an existing
    package is replaced only with ``overwrite=True``.
    """
    import torch
    from safetensors.torch import save_file

    out_dir = Path(out_dir).expanduser()
    fields = manifest.to_dict() if isinstance(manifest, Manifest) else json.loads(json.dumps(dict(manifest)))
    fields.setdefault("format_version", FORMAT_VERSION)
    fields["weights"] = {"file": WEIGHTS_FILE, "sha256": "0" * 64}
    Manifest.from_dict(fields, source=out_dir / MANIFEST_FILE)  # fail before writing anything
    if out_dir.exists() and not overwrite:
        raise ModelError(
            f"A model package already exists at {out_dir}; choose another folder or allow overwriting.",
            path=out_dir,
        )
    tensors = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict[{key!r}] is a {type(value).__name__}, not a tensor")
        # clone(): safetensors refuses tensors that share storage
        tensors[key] = value.detach().to("cpu").contiguous().clone()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        weights_path = staging / WEIGHTS_FILE
        save_file(tensors, str(weights_path), metadata={"format": "pt"})
        fields["weights"]["sha256"] = sha256_of_file(weights_path)
        final = Manifest.from_dict(fields, source=out_dir / MANIFEST_FILE)
        (staging / MANIFEST_FILE).write_text(json.dumps(final.to_dict(), indent=2) + "\n", encoding="utf-8")
        usual_permissions(staging)
        _move_into_place(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def usual_permissions(folder: Path) -> None:
    """mkdtemp makes 0700 folders: give the package the permissions a normal copy would have
    (0777 / 0666 less the umask), so an installed model (e.g. under /opt) is readable by every user."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for item in folder.iterdir():
        os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~umask)


def _move_into_place(staging: Path, destination: Path) -> None:
    """Rename ``staging`` to ``destination``, replacing an existing folder without a gap of nothing."""
    if not destination.exists():
        os.replace(staging, destination)
        return
    backup = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".old", dir=destination.parent))
    backup.rmdir()
    os.replace(destination, backup)
    try:
        os.replace(staging, destination)
    except OSError:
        os.replace(backup, destination)
        raise
    if backup.is_dir() and not backup.is_symlink():
        shutil.rmtree(backup, ignore_errors=True)
    else:
        backup.unlink(missing_ok=True)
