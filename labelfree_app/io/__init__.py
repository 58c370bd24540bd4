"""Reading and writing images: any supported file becomes an ``Image`` with (C, Z, Y, X) pixels.

Qt-free. Every user-facing failure is a ``labelfree_app.errors`` ImageReadError or
ImageWriteError subclass whose message names the file.
"""

from __future__ import annotations

from labelfree_app.io.atomic import atomic_path, atomic_write_bytes, ensure_free_space
from labelfree_app.io.channels import find_transmitted_channel
from labelfree_app.io.image import Image
from labelfree_app.io.ome_zarr import is_ome_zarr, read_ome_zarr, write_ome_zarr
from labelfree_app.io.reading import read_image, read_plane_series
from labelfree_app.io.writing import read_provenance, write_image

__all__ = [
    "Image",
    "atomic_path",
    "atomic_write_bytes",
    "ensure_free_space",
    "find_transmitted_channel",
    "is_ome_zarr",
    "read_image",
    "read_ome_zarr",
    "read_plane_series",
    "read_provenance",
    "write_image",
    "write_ome_zarr",
]
