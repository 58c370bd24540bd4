"""npe2 reader: OME-TIFF and OME-Zarr through LabelFree's own reader (channel names, pixel sizes).

napari reads a TIFF's pixels but not its OME channel names or physical sizes, and does not read
OME-Zarr at all without another plugin; here each channel becomes a layer named after it, scaled
in micrometres. OME-Zarr pixels stay lazy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence, Union

from labelfree_app.gui.napari_plugin.layers import LayerData, image_layers

PathOrPaths = Union[str, Sequence[str]]
OME_TIFF_SUFFIXES = (".ome.tif", ".ome.tiff")


def _readable(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(OME_TIFF_SUFFIXES):
        return path.is_file()
    if name.endswith(".ome.zarr"):
        from labelfree_app.io.ome_zarr import is_ome_zarr

        return is_ome_zarr(path)
    return False


def get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """``read_layers`` when every path is an OME-TIFF file or an OME-Zarr folder, else None."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(_readable(Path(p)) for p in paths):
        return None
    return read_layers


def read_layers(path: PathOrPaths) -> list[LayerData]:
    """One image layer per channel of each file (raises a ``LabelFreeError`` sentence on failure)."""
    from labelfree_app.io import read_image

    paths = [path] if isinstance(path, (str, Path)) else list(path)
    layers: list[LayerData] = []
    for item in paths:
        image: Any = read_image(Path(item), rgb="luminance")
        layers.extend(image_layers(image, source=str(item)))
    return layers
