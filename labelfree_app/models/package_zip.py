"""Opening a model package zip safely: no zip-slip, no links, no zip bombs, extracted atomically."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path

from labelfree_app import paths
from labelfree_app.errors import ModelError
from labelfree_app.models.manifest import MANIFEST_FILE

_MAX_ZIP_BYTES = 16 * 1024**3  # refuse zip bombs; real packages are well under a GB
_IGNORED_ZIP_PREFIXES = ("__MACOSX/",)
_DRIVE = re.compile(r"^[A-Za-z]:")


def _safe_member_parts(name: str, zip_path: Path) -> tuple[str, ...]:
    """The path parts of a zip entry, refusing absolute paths and '..' (zip-slip)."""
    normalized = name.replace("\\", "/")
    parts = tuple(p for p in normalized.split("/") if p not in ("", "."))
    if normalized.startswith("/") or _DRIVE.match(normalized) or ".." in parts:
        raise ModelError(
            f"The zip {zip_path} holds an unsafe entry '{name}' that points outside the package; "
            "it was not opened.",
            path=zip_path,
        )
    return parts


def _package_root(members: list[tuple[str, ...]], zip_path: Path) -> tuple[str, ...]:
    """Where manifest.json sits in the zip: the top level or one sub-folder."""
    if (MANIFEST_FILE,) in members:
        return ()
    roots = {parts[:-1] for parts in members if len(parts) == 2 and parts[-1] == MANIFEST_FILE}
    if len(roots) == 1:
        return roots.pop()
    problem = "several sub-folders with" if roots else f"no {MANIFEST_FILE} at the top level or in one sub-folder, nor"
    raise ModelError(
        f"The zip {zip_path} has {problem} a {MANIFEST_FILE}; zip one model package folder.",
        path=zip_path,
    )


def extract_zip(zip_path: Path, target: Path | None = None) -> Path:
    """Extract a package zip (safely) into ``target``, by default a cache folder keyed by the zip's
    sha256 and reused; return the package root inside it."""
    cache = paths.user_cache_dir() / "model-packages" if target is None else target.parent
    try:
        target = target if target is not None else cache / _sha256(zip_path)[:24]
        with zipfile.ZipFile(zip_path) as archive:
            entries = []
            total = 0
            for info in archive.infolist():
                if info.is_dir() or info.filename.startswith(_IGNORED_ZIP_PREFIXES):
                    continue
                parts = _safe_member_parts(info.filename, zip_path)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise ModelError(
                        f"The zip {zip_path} holds a symbolic link '{info.filename}'; it was not opened.",
                        path=zip_path,
                    )
                total += info.file_size
                entries.append((info, parts))
            if total > _MAX_ZIP_BYTES:
                raise ModelError(f"The zip {zip_path} unpacks to more than 16 GB; it was not opened.", path=zip_path)
            root = _package_root([parts for _, parts in entries], zip_path)
            if target.joinpath(*root, MANIFEST_FILE).is_file():
                return target.joinpath(*root)
            cache.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".extract.", dir=cache))
            try:
                for info, parts in entries:
                    destination = staging.joinpath(*parts)
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(info) as source, open(destination, "wb") as sink:
                        shutil.copyfileobj(source, sink, 1 << 20)
                if target.exists():
                    shutil.rmtree(target, ignore_errors=True)
                os.replace(staging, target)
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        # RuntimeError: an encrypted entry; NotImplementedError: an unknown compression method
        raise ModelError(f"The zip {zip_path} is damaged or encrypted ({exc}); download or export it again.",
                         path=zip_path) from exc
    except OSError as exc:
        raise ModelError(
            f"The zip {zip_path} could not be unpacked into {cache} ({exc.strerror or exc}).", path=zip_path
        ) from exc
    return target.joinpath(*root)


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
