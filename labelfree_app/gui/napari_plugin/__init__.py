"""LabelFree inside napari: a dock widget that predicts on an image layer, and a reader.

The npe2 manifest (``napari.yaml``) names the contributions; the package entry point
``napari.manifest`` in ``pyproject.toml`` points napari at it. Install with the ``[napari]`` extra.
The widget reuses the app's ``RunControls``, ``CoreBackend.run`` (the engine) and ``EventWorker``;
``layers`` converts between napari layers and ``io.Image`` / ``PredictionResult``.
"""

from __future__ import annotations
