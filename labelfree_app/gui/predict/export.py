"""Export the current result: the very files `labelfree predict` writes for the same input and
settings (``<stem>__<model>.ome.tif``, ``__variance``, ``__steps``, and ``__trust`` where the run drew
a trust map, with provenance and pixel sizes, through ``batch.process.save_result``; a huge image's
result, which that same job already streamed to the cache, is copied), plus the window's own
extras: the denoising GIF and a PNG of the panels, written through ``io.atomic``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from labelfree_app.errors import ImageWriteError, OutputNotWritableError
from labelfree_app.gui.backend import Backend
from labelfree_app.gui.streamed_run import SavedResult
from labelfree_app.gui.viewer.image_panel import auto_levels
from labelfree_app.io.atomic import atomic_path, ensure_free_space

GIF_FRAME_MS = 100


def frames_to_uint8(frames: np.ndarray) -> list[np.ndarray]:
    """(F, C, Z, Y, X) or (F, Z, Y, X) -> one 8-bit (Y, X) image per frame, max over z, own contrast."""
    stack = np.asarray(frames, dtype=np.float32)
    if stack.ndim == 5:
        stack = stack[:, 0]
    images = []
    for frame in stack:
        plane = frame.max(axis=0) if frame.ndim == 3 else frame
        low, high = auto_levels(plane)
        images.append((np.clip((plane - low) / (high - low), 0, 1) * 255).astype(np.uint8))
    return images


def write_gif(path: Path, frames: np.ndarray, *, protected_paths: Sequence[Path] = ()) -> Path:
    """The denoising frames as a looping 8-bit GIF, written atomically."""
    from PIL import Image as PILImage

    pictures = [PILImage.fromarray(image) for image in frames_to_uint8(frames)]
    with atomic_path(path, protected_paths=protected_paths) as temp:
        pictures[0].save(temp, format="GIF", save_all=True, append_images=pictures[1:], duration=GIF_FRAME_MS, loop=0)
    return path


def copy_saved_result(result: SavedResult, paths: Any, inputs: Sequence[Path]) -> list[Path]:
    """Copy a streamed result's files (``SavedResult``) to ``paths`` (``export.OutputPaths``), each
    through a temp file and a rename; all of them or none."""
    pairs = [(result.prediction, paths.prediction)] + ([(result.variance, paths.variance)] if result.variance else [])
    ensure_free_space(paths.prediction.parent, sum(Path(source).stat().st_size for source, _ in pairs))
    written: list[Path] = []
    try:
        for source, target in pairs:
            if Path(target).resolve() != Path(source).resolve():  # exporting into the cache itself
                with atomic_path(target, protected_paths=inputs) as temp:
                    shutil.copyfile(source, temp)
            written.append(Path(target))
    except BaseException:
        for path in written:
            if path.resolve() not in {Path(source).resolve() for source, _ in pairs}:
                path.unlink(missing_ok=True)
        raise
    return written


def export_names(folder: Path, first_input: Path, model_id: str, stem: str | None = None) -> list[Path]:
    """Every file an export of ``model_id``'s result for ``first_input`` may write into ``folder``."""
    from labelfree_app.export import output_paths

    paths = output_paths(Path(first_input), model_id, Path(folder), stem=stem)
    base = paths.prediction.name[: -len(".ome.tif")]
    return [*paths.all(), Path(folder) / f"{base}__steps.gif", Path(folder) / f"{base}__panels.png"]


def existing_exports(folder: Path, first_input: Path, model_id: str) -> list[Path]:
    """The files an export would replace (empty: nothing is in the way)."""
    return [p for p in export_names(folder, first_input, model_id) if os.path.lexists(p)]


def numbered_stem(folder: Path, first_input: Path, model_id: str) -> str:
    """``<stem>-2``, ``-3``…: the first name under which an export replaces nothing."""
    from labelfree_app.export import image_stem

    stem = image_stem(Path(first_input))
    number = 2
    while any(os.path.lexists(p) for p in export_names(folder, first_input, model_id, f"{stem}-{number}")):
        number += 1
    return f"{stem}-{number}"


def export_result(
    folder: Path,
    inputs: Path | Sequence[Path],
    result: Any,
    backend: Backend,
    *,
    pixel_size_um: dict[str, float] | None = None,
    frames: np.ndarray | None = None,
    save_panels_png: Callable[[Path], bool] | None = None,
    stem: str | None = None,
) -> list[Path]:
    """Write everything there is for ``result`` into ``folder``; returns the written paths.

    ``inputs`` are the files the image was read from (the planes of a z-stack, in order): the
    outputs are named after the first (or ``stem``: a numbered name that replaces nothing), and
    the provenance records them all with their sha256.
    """
    from labelfree_app.batch.process import save_result  # torch-backed: not at window start
    from labelfree_app.export import output_paths

    folder = Path(folder)
    if not folder.is_dir():
        raise OutputNotWritableError(f"The export folder {folder} does not exist; choose another folder.", path=folder)
    files = [Path(inputs)] if isinstance(inputs, (str, Path)) else [Path(p) for p in inputs]
    frames = frames if frames is not None else getattr(result, "frames", None)
    has_frames = frames is not None and len(frames) > 0 and not isinstance(result, SavedResult)
    if has_frames:
        stack = np.asarray(frames, dtype=np.float32)
        if stack.ndim == 4:  # (F, Z, Y, X): one channel
            stack = stack[:, np.newaxis]
        result = dataclasses.replace(result, frames=stack)
    paths = output_paths(files[0], result.model_id, folder, stem=stem)
    if isinstance(result, SavedResult):  # already written by the job, with its provenance
        written = copy_saved_result(result, paths, files)
    else:
        written = save_result(result, backend.model_manifest(result.model_id), files, paths,
                              pixel_size_um=pixel_size_um, save_steps=has_frames, trust_map=True)
    base = paths.prediction.name[: -len(".ome.tif")]
    if has_frames:
        written.append(write_gif(folder / f"{base}__steps.gif", stack, protected_paths=files))
    if save_panels_png is not None:
        png = folder / f"{base}__panels.png"
        with atomic_path(png, protected_paths=files) as temp:
            if not save_panels_png(temp):
                raise ImageWriteError(f"Writing {png} failed (the panels could not be saved as PNG); "
                                      "nothing was saved.", path=png)
        written.append(png)
    return written
