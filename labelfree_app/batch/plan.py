"""Which jobs a batch runs: inputs (files, folders, globs) × models, optionally one shard of them."""

from __future__ import annotations

import errno
import glob
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from labelfree_app.errors import FileAccessError, LabelFreeError, OverwriteInputError
from labelfree_app.export import IMAGE_SUFFIXES, OutputPaths, image_stem, merged_id, output_paths

OME_ZARR_SUFFIX = ".ome.zarr"

REPORT_NAME = "batch_report"
MERGED_KIND = "merged"  # the kind of a merged job's model (``merged_ref``)


class BatchPlanError(LabelFreeError):
    """The batch cannot start as given (bad shard, outputs that would collide…)."""


@dataclass(frozen=True)
class BatchInput:
    """One input file, and the sub-folder (relative to a folder input) its outputs go to.

    ``planes`` names the single-plane files of one z-stack (``predict --z-stack``); ``path`` is then
    the first of them, and gives the outputs their names.
    """

    path: Path
    rel_dir: str = ""
    planes: tuple[Path, ...] = ()

    @property
    def files(self) -> list[Path]:
        """Every file this input is read from (recorded in the provenance, never overwritten)."""
        return list(self.planes) if self.planes else [self.path]

    @property
    def key(self) -> str:
        """A machine-independent name for sharding and reports: ``rel_dir/file name``."""
        return f"{self.rel_dir}/{self.path.name}" if self.rel_dir else self.path.name


@dataclass(frozen=True)
class ModelRef:
    """A model resolved once by the client; workers load it from ``path`` and check ``sha256``."""

    id: str
    path: str
    sha256: str
    kind: str
    trust_map: bool = False  # it draws a trust map: a 2D model whose manifest records its training inputs
    parts: tuple["ModelRef", ...] = ()  # a merged job's models (``merged_ref``), one channel each


def merged_ref(models: Sequence[ModelRef]) -> ModelRef:
    """One 'model' for a merged job: id ``A+B`` and the models, in the order given, in ``parts``."""
    ids = [m.id for m in models]
    if len(models) < 2:
        raise BatchPlanError("--merge needs two or more models; name each with --model (-m A -m B).")
    if len(set(ids)) != len(ids):
        raise BatchPlanError("The same model is named twice; name each model once.")
    return ModelRef(id=merged_id(ids), path="", sha256="", kind=MERGED_KIND, parts=tuple(models))


@dataclass(frozen=True)
class BatchJob:
    """One input × one model."""

    index: int
    input: BatchInput
    model: ModelRef

    def outputs(self, out_dir: Path, fmt: str = "ome-tiff") -> OutputPaths:
        folder = out_dir / self.input.rel_dir if self.input.rel_dir else out_dir
        return output_paths(self.input.path, self.model.id, folder, fmt=fmt)


@dataclass(frozen=True)
class Shard:
    """Shard ``k`` of ``n`` (1-based), as in ``--shard 2/8`` for a job array."""

    k: int
    n: int

    def holds(self, key: str) -> bool:
        digest = hashlib.sha1(key.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.n == self.k - 1

    @property
    def label(self) -> str:
        return f"shard-{self.k}-of-{self.n}"


@dataclass
class BatchPlan:
    """The jobs to run, in order, and what was left to other shards."""

    jobs: list[BatchJob]
    out_dir: Path
    shard: Shard | None = None
    other_shards: int = 0
    models: list[ModelRef] = field(default_factory=list)

    @property
    def report_name(self) -> str:
        return f"{REPORT_NAME}.{self.shard.label}" if self.shard else REPORT_NAME


def parse_shard(text: str) -> Shard:
    """'K/N' -> Shard(K, N), with a clear error for anything else."""
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise BatchPlanError(f"--shard takes K/N, such as 2/8, not '{text}'.") from None
    if n < 1 or not 1 <= k <= n:
        raise BatchPlanError(f"--shard {text}: K must be between 1 and N (N ≥ 1).")
    return Shard(k, n)


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def find_inputs(items: Sequence[str | Path], *, images_only: bool = True,
                exclude: Path | None = None, empty_folders: bool = True) -> list[BatchInput]:
    """Files, folders (recursively) and glob patterns -> unique inputs in a stable order.

    A folder's files keep their sub-folder (``rel_dir``) so outputs mirror it. With
    ``images_only=False`` a folder's other visible files are listed too, so a batch reports them
    instead of silently passing over them. Files under ``exclude`` (the output folder) are skipped.
    With ``empty_folders=False`` a folder holding no image is refused with a sentence.
    """
    excluded = exclude.resolve() if exclude is not None else None
    found: list[BatchInput] = []
    for item in items:
        path = Path(item)
        text = str(item)
        if os.path.isdir(path) and _is_ome_zarr_folder(path):  # a folder that is ONE image
            found.append(BatchInput(path))
        elif os.path.isdir(path):
            before = len(found)
            for candidate in _walk_files(path):
                relative = candidate.relative_to(path)
                if any(part.startswith(".") for part in relative.parts):
                    continue
                if images_only and not candidate.name.lower().endswith(IMAGE_SUFFIXES):
                    continue
                found.append(BatchInput(candidate, relative.parent.as_posix() if relative.parent.parts else ""))
            if not empty_folders and len(found) == before:
                raise FileAccessError(f"{item} is a folder with no TIFF or PNG images in it; give image files or "
                                      "a folder that holds them.", path=item)
        elif any(ch in text for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
            if not matches:
                raise FileAccessError(f"No file matches '{text}'; check the pattern.", path=text)
            found.extend(BatchInput(p) for p in matches if p.is_file() and not _is_hidden(p))
        else:
            found.append(BatchInput(path))
    unique: dict[Path, BatchInput] = {}
    for entry in found:
        resolved = _resolve(entry.path)
        check_output_outside_store(resolved, excluded, entry.path)
        if excluded is not None and (resolved == excluded or excluded in resolved.parents):
            continue
        unique.setdefault(resolved, entry)
    return list(unique.values())


def check_output_outside_store(store: Path, out_dir: Path | None, given: Path) -> None:
    """Refuse an output folder that is an input OME-Zarr folder or lies inside one: writing there would change
    the input (a store is one image, and its readers would meet LabelFree's files)."""
    if out_dir is None or not (store == out_dir or store in out_dir.parents) or not os.path.isdir(store):
        return
    raise OverwriteInputError(f"The output folder {out_dir} is inside the OME-Zarr input {given}, which LabelFree "
                              "never writes into; choose an output folder outside it.", path=out_dir)


def _check_readable_folder(folder: Path) -> None:
    if not os.access(folder, os.R_OK | os.X_OK):
        raise FileAccessError(f"The folder {folder} cannot be read (permission denied); "
                              "check its permissions or copy the images elsewhere.", path=folder)


def _walk_files(folder: Path) -> list[Path]:
    """Regular files under ``folder`` (sorted) and its ``.ome.zarr`` folders (not walked into), following
    linked folders once each; a folder that cannot be read is one sentence, never a silent gap."""
    def fail(error: OSError) -> None:
        where = Path(error.filename) if error.filename else folder
        raise FileAccessError(f"The folder {where} cannot be read ({error.strerror or error}); check its "
                              "permissions or copy the images elsewhere.", path=where)

    _check_readable_folder(folder)
    seen: set[str] = set()
    files: list[Path] = []
    for root, dirs, names in os.walk(folder, onerror=fail, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link back up the tree
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        images = [name for name in dirs if name.lower().endswith(OME_ZARR_SUFFIX)]
        files.extend(Path(root) / name for name in images)  # one input each, never walked into
        dirs[:] = [name for name in dirs if name not in images]
        files.extend(Path(root) / name for name in names if os.path.isfile(os.path.join(root, name)))
    return sorted(files)


def _is_ome_zarr_folder(path: Path) -> bool:
    from labelfree_app.io.ome_zarr import is_ome_zarr

    return is_ome_zarr(path)


def _resolve(path: Path) -> Path:
    """The real path; a symbolic-link loop or an unreachable link target is one sentence."""
    try:
        return path.resolve(strict=os.path.lexists(path))
    except (RuntimeError, OSError) as exc:
        reason = ("is a symbolic link that leads back to itself (a loop)"
                  if isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == errno.ELOOP
                  else f"cannot be opened ({getattr(exc, 'strerror', None) or exc})")
        raise FileAccessError(f"{path} {reason}; give the real file instead.", path=path) from None


def check_distinct_outputs(inputs: Sequence[BatchInput]) -> None:
    """Refuse, before any work, inputs whose outputs would have the same names."""
    owners: dict[str, Path] = {}
    for entry in inputs:
        where = f"{entry.rel_dir}/{image_stem(entry.path)}"
        other = owners.setdefault(where, entry.path)
        if other != entry.path:
            raise BatchPlanError(
                f"{other} and {entry.path} would write the same output names; rename one, or pass "
                "their common folder so the outputs keep their sub-folders."
            )


def expand_inputs(items: Sequence[str | Path]) -> list[Path]:
    """Image files named by files, folders and glob patterns (as ``predict`` takes them)."""
    return [entry.path for entry in find_inputs(items)]


def plan_batch(items: Sequence[str | Path], models: Sequence[ModelRef], out_dir: Path, *,
               shard: Shard | None = None) -> BatchPlan:
    """Jobs for every input × model (inputs of other shards left out); refuses colliding outputs."""
    if not models:
        raise BatchPlanError("Name at least one model with --model.")
    if len({m.id for m in models}) != len(models):
        raise BatchPlanError("The same model is named twice; name each model once.")
    out_dir = Path(out_dir)
    inputs = find_inputs(items, images_only=False, exclude=out_dir)
    if not inputs:
        raise BatchPlanError("No input files were found; give image files, folders or glob patterns.")
    check_distinct_outputs(inputs)
    kept = [entry for entry in inputs if shard is None or shard.holds(entry.key)]
    jobs = [BatchJob(i, entry, model) for i, (entry, model) in
            enumerate((e, m) for e in kept for m in models)]
    return BatchPlan(jobs, out_dir, shard, len(inputs) - len(kept), list(models))


def resolve_models(ids: Sequence[str], registry: object | None = None) -> list[ModelRef]:
    """Model ids or package folders -> ModelRefs (path and weights sha256 fixed for the batch)."""
    from labelfree_app.models.registry import ModelRegistry

    registry = registry or ModelRegistry()
    return [model_ref(registry.resolve(model_id)) for model_id in ids]  # type: ignore[attr-defined]


def model_ref(package: Any) -> ModelRef:
    """The ModelRef of a loaded model package (its path and weights sha256 fixed from now on)."""
    manifest = package.manifest.to_dict()
    return ModelRef(id=manifest["id"], path=os.fspath(package.path),
                    sha256=(manifest.get("weights") or {}).get("sha256", ""), kind=manifest["kind"],
                    trust_map=draws_trust_map(manifest))


def draws_trust_map(manifest: dict[str, Any]) -> bool:
    """Whether the engine draws a trust map for this model: 2D, with a readable input profile."""
    from labelfree_app.core.trust import InputProfile

    profile = (manifest.get("trust") or {}).get("input_profile")
    if int(manifest.get("dims", 2)) != 2 or not profile:
        return False
    try:
        InputProfile.from_dict(profile)
    except (ValueError, KeyError, TypeError):
        return False
    return True
