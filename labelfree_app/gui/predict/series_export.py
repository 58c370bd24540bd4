"""Export a time series' prediction: one TCZYX OME-TIFF (and its variance) plus a movie.

The frames the window predicted one job each (``series_run``) are copied, one time point at a
time, into the writer `labelfree predict` streams a series through (``export.StreamedFiles``: a
tiled OME-TIFF with the provenance, renamed into place at the end), so memory stays one frame.
The movie shows input | prediction | overlay side by side at the frame rate asked: MP4 where the
installed libraries can encode it (imageio with its ffmpeg plugin or PyAV), else an animated GIF
through Pillow. Each picture is encoded and written as it is made, so the movie's memory does not
grow with the number of frames. Pillow's ``save(save_all=True)`` gathers every frame of a GIF before
writing any: 2026-12-07, three 1024² panels shrunk to 342 × 1034 pictures, peak RSS +86 MiB for 100
and +249 MiB for 500 that way, +70 and +90 MiB written picture by picture (same 222 MiB file).
Each panel is shrunk to ``MOVIE_PANEL_MAX_SIDE``, which keeps the file small.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Sequence

import numpy as np

from labelfree_app.errors import LabelFreeError
from labelfree_app.gui.predict.series_run import SeriesResult
from labelfree_app.gui.viewer.image_panel import auto_levels
from labelfree_app.gui.viewer.panel_grid import overlay_rgb
from labelfree_app.io.atomic import atomic_path

MOVIE_PANEL_MAX_SIDE = 384
GAP_PX = 4


def can_write_mp4() -> bool:
    """Whether an installed library encodes MP4 (imageio's ffmpeg plugin, or PyAV)."""
    return importlib.util.find_spec("imageio") is not None and any(
        importlib.util.find_spec(name) is not None for name in ("imageio_ffmpeg", "av"))


def frame_planes(path: Path, z: int, max_projection: bool) -> np.ndarray:
    """The (Y, X) plane of a written frame's first channel."""
    from labelfree_app.io import read_image

    volume = np.asarray(read_image(path, lazy=False).data, dtype=np.float32)[0]  # (Z, Y, X)
    return volume.max(axis=0) if max_projection else volume[min(z, volume.shape[0] - 1)]


def _to_uint8(plane: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    low, high = float(levels[0]), float(levels[1])
    scaled = np.clip((np.nan_to_num(plane.astype(np.float32)) - low) / max(high - low, 1e-12), 0, 1)
    return (scaled * 255).astype(np.uint8)


def _shrink(rgb: np.ndarray) -> np.ndarray:
    step = max(1, -(-max(rgb.shape[:2]) // MOVIE_PANEL_MAX_SIDE))  # ceil: an integer stride
    return rgb[::step, ::step]


def movie_frame(input_plane: np.ndarray, prediction: np.ndarray, input_levels: Sequence[float],
                prediction_levels: Sequence[float]) -> np.ndarray:
    """Input | prediction | overlay as one (Y, 3X + gaps, 3) uint8 picture."""
    grey = _to_uint8(input_plane, input_levels)
    pred = _to_uint8(prediction, prediction_levels)
    over = (overlay_rgb(input_plane, input_levels, prediction, prediction_levels) * 255).astype(np.uint8)
    panels = [_shrink(np.repeat(grey[..., None], 3, axis=2)), _shrink(np.repeat(pred[..., None], 3, axis=2)),
              _shrink(over)]
    gap = np.zeros((panels[0].shape[0], GAP_PX, 3), np.uint8)
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)


def write_movie(base: Path, pictures: Iterable[np.ndarray], fps: int, *, protected_paths: Sequence[Path] = ()) -> Path:
    """``base`` + ``.mp4`` where it can be encoded, else ``.gif``; written atomically, one picture at a
    time as ``pictures`` yields them (none is kept); returns the path."""
    pictures = iter(pictures)
    if can_write_mp4():
        path = base.with_name(base.name + ".mp4")
        with atomic_path(path, protected_paths=protected_paths) as temp:
            _write_mp4(temp, pictures, fps)
        return path
    path = base.with_name(base.name + ".gif")
    with atomic_path(path, protected_paths=protected_paths) as temp, open(temp, "wb") as file:
        write_gif(file, pictures, fps)
    return path


def _write_mp4(path: Path, pictures: Iterator[np.ndarray], fps: int) -> None:
    """H.264 in an MP4 container at ``path`` (a temp name: the container is named, not guessed from it)."""
    import imageio.v3 as iio

    if importlib.util.find_spec("imageio_ffmpeg") is not None:
        with iio.imopen(path, "w", plugin="FFMPEG", extension=".mp4", legacy_mode=True) as file:
            with file.legacy_get_writer(fps=fps, output_params=["-f", "mp4"]) as writer:
                for picture in pictures:
                    writer.append_data(picture)
        return
    with iio.imopen(path, "w", plugin="pyav", extension=".mp4", container="mp4") as file:
        started = False
        for picture in pictures:
            if not started:
                file.init_video_stream("libx264", fps=fps)
                started = True
            file.write_frame(_even(picture))  # H.264 in 4:2:0 wants an even width and height


def _even(picture: np.ndarray) -> np.ndarray:
    rows, cols = picture.shape[0] % 2, picture.shape[1] % 2
    return np.pad(picture, ((0, rows), (0, cols), (0, 0))) if rows or cols else picture


def write_gif(file: BinaryIO, pictures: Iterable[np.ndarray], fps: int) -> None:
    """An endlessly looping animated GIF of (Y, X, 3) uint8 ``pictures``, each encoded (its own
    256-colour palette) and written before the next is asked for. Pillow's ``save_all`` would gather
    every frame first, to merge repeats and crop to what changed, which a time-lapse rarely has."""
    from PIL import GifImagePlugin
    from PIL import Image as PILImage

    duration = round(1000 / max(int(fps), 1))
    count, size = 0, (0, 0)
    for picture in pictures:
        frame = PILImage.fromarray(np.ascontiguousarray(picture, dtype=np.uint8)).convert(
            "P", palette=PILImage.Palette.ADAPTIVE)
        if count == 0:  # the screen size, the first palette and the loop
            header, _ = GifImagePlugin.getheader(frame, info={"loop": 0, "duration": duration})
            file.writelines(header)
        elif frame.size != size:
            raise ValueError(f"a movie's pictures must share one size: {frame.size} after {size}")
        size = frame.size
        file.writelines(GifImagePlugin.getdata(frame, (0, 0), duration=duration, include_color_table=count > 0))
        file.flush()  # on disk before the next picture is made
        count += 1
    if count == 0:
        raise ValueError("a movie needs at least one picture")
    file.write(b";")


def _series_result(series: SeriesResult, shape: tuple[int, ...], manifest: dict[str, Any], meta: dict[str, Any],
                   has_variance: bool) -> Any:
    from labelfree_app.core.streaming import StreamedResult

    frames = series.frames.values()
    settings = {k: v for k, v in (meta.get("settings") or {}).items() if k != "time_point"}
    return StreamedResult(
        axes="TCZYX", shape=shape, channel_names=tuple(manifest.get("output", {}).get("channel_names") or ()),
        model_id=series.model_id, settings=settings, seconds=sum(f.seconds for f in frames),
        device=next(iter(frames)).device, backend=str(meta.get("backend") or "torch"),
        notes=(f"Predicted one time point at a time in the window ({series.count} time points).",),
        has_variance=has_variance)


def write_series(series: SeriesResult, manifest: dict[str, Any], inputs: Sequence[Path], paths: Any,
                 pixel_size_um: dict[str, float] | None = None) -> list[Path]:
    """The frames of a complete ``series`` as one TCZYX prediction (and variance) at ``paths``."""
    from labelfree_app.export import StreamedFiles
    from labelfree_app.io import read_image, read_provenance

    if not series.complete():
        raise LabelFreeError(f"{len(series.frames)} of {series.count} time points are predicted; press Predict all "
                             "time points first, then export.")
    first = series.frames[0]
    meta = read_provenance(first.prediction)
    sample = read_image(first.prediction, lazy=True).data  # (C, Z, Y, X)
    shape = (series.count, *(int(n) for n in sample.shape))
    has_variance = all(f.variance is not None for f in series.frames.values())
    dtype = str((meta.get("settings") or {}).get("dtype", "float32"))
    files = [Path(p) for p in inputs]
    with StreamedFiles(paths, dtype, pixel_size_um=pixel_size_um, protected_paths=files) as sink:
        sink.begin(shape, tuple(manifest.get("output", {}).get("channel_names") or ()), has_variance)
        for t in range(series.count):
            frame = series.frames[t]
            prediction = np.asarray(read_image(frame.prediction, lazy=False).data, dtype=np.float32)
            variance = np.asarray(read_image(frame.variance, lazy=False).data, dtype=np.float32) if has_variance \
                else None
            for z in range(shape[2]):
                sink.write(t, z, 0, prediction[:, z], variance[:, z] if variance is not None else None)
        return sink.finish(_series_result(series, shape, manifest, meta, has_variance), manifest, files)


def export_series(folder: Path, inputs: Sequence[Path], series: SeriesResult, manifest: dict[str, Any],
                  input_frame: Callable[[int], np.ndarray], *, z: int = 0, max_projection: bool = False,
                  fps: int = 5, pixel_size_um: dict[str, float] | None = None) -> list[Path]:
    """Write the TCZYX prediction (and variance) named as `labelfree predict` names them, plus the movie
    ``<stem>__<model>__movie.mp4|gif``; ``input_frame(t)`` gives the input's (Z, Y, X) at ``t``."""
    from labelfree_app.export import output_paths

    folder = Path(folder)
    files = [Path(p) for p in inputs]
    paths = output_paths(files[0], series.model_id, folder)
    written = write_series(series, manifest, files, paths, pixel_size_um)

    def plane(volume: np.ndarray) -> np.ndarray:
        volume = np.asarray(volume, dtype=np.float32)
        return volume.max(axis=0) if max_projection else volume[min(z, volume.shape[0] - 1)]

    first_in = plane(input_frame(0))
    first_pred = frame_planes(series.frames[0].prediction, z, max_projection)
    levels_in, levels_pred = auto_levels(first_in), auto_levels(first_pred)  # one contrast for the whole movie

    def pictures() -> Iterator[np.ndarray]:
        for t in range(series.count):
            prediction = frame_planes(series.frames[t].prediction, z, max_projection)
            yield movie_frame(plane(input_frame(t)), prediction, levels_in, levels_pred)

    base = paths.prediction.with_name(paths.prediction.name[: -len(".ome.tif")] + "__movie")
    written.append(write_movie(base, pictures(), fps, protected_paths=files))
    return written
