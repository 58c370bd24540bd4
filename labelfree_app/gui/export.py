"""Export the current result: prediction, variance, denoising frames (TIFF stack + GIF), panels PNG.

TIFFs go through the io layer's atomic ``write_image``; the GIF and PNG are written to a temp
file in the same folder and renamed, so a failed export never leaves a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from labelfree_app.errors import ImageWriteError, OutputNotWritableError
from labelfree_app.gui.backend import Backend
from labelfree_app.gui.image_panel import auto_levels

GIF_FRAME_MS = 100


def provenance_of(result: Any, source: Path) -> dict[str, Any]:
    return {
        "source": str(source),
        "model_id": getattr(result, "model_id", ""),
        "settings": dict(getattr(result, "settings", {}) or {}),
        "seconds": float(getattr(result, "seconds", 0.0)),
        "device": str(getattr(result, "device", "")),
    }


def _atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputNotWritableError(
            f"Cannot write to the folder {path.parent}; choose a folder you can write to.", path=path
        ) from exc
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ImageWriteError(f"Writing {path} failed ({exc.strerror or exc}); nothing was saved.", path=path) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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


def write_gif(path: Path, frames: np.ndarray) -> Path:
    from PIL import Image as PILImage

    pictures = [PILImage.fromarray(image) for image in frames_to_uint8(frames)]

    def write(tmp: Path) -> None:
        pictures[0].save(tmp, format="GIF", save_all=True, append_images=pictures[1:], duration=GIF_FRAME_MS, loop=0)

    return _atomic_write(path, write)


def export_result(
    folder: Path,
    source: Path,
    result: Any,
    backend: Backend,
    *,
    frames: np.ndarray | None = None,
    save_panels_png: Callable[[Path], bool] | None = None,
) -> list[Path]:
    """Write everything there is for ``result`` into ``folder``; returns the written paths."""
    folder = Path(folder)
    if not folder.is_dir():
        raise OutputNotWritableError(f"The export folder {folder} does not exist; choose another folder.", path=folder)
    stem = source.name.split(".")[0] + f"_{getattr(result, 'model_id', 'prediction') or 'prediction'}"
    provenance = provenance_of(result, source)
    names = tuple(getattr(result, "channel_names", ()) or ())
    axes = getattr(result, "axes", "CZYX")
    protected = [source]  # inputs are never overwritten
    written = [
        backend.write_image(folder / f"{stem}_prediction.tif", result.prediction, axes, names, provenance, protected)
    ]
    if getattr(result, "variance", None) is not None:
        written.append(
            backend.write_image(folder / f"{stem}_variance.tif", result.variance, axes, names, provenance, protected)
        )
    frames = frames if frames is not None else getattr(result, "frames", None)
    if frames is not None and len(frames):
        stack = np.asarray(frames, dtype=np.float32)
        if stack.ndim == 5:  # (F, C, Z, Y, X): keep the first channel, frames play along T
            stack = stack[:, 0]
        written.append(
            backend.write_image(folder / f"{stem}_denoising.tif", stack, "TZYX", names[:1] or None, provenance, protected)
        )
        written.append(write_gif(folder / f"{stem}_denoising.gif", stack))
    if save_panels_png is not None:
        png = folder / f"{stem}_panels.png"

        def write_png(tmp: Path) -> None:
            if not save_panels_png(tmp):
                raise OSError(f"could not save a PNG to {tmp}")

        written.append(_atomic_write(png, write_png))
    return written
