"""The desktop app: the only package that imports PySide6 and pyqtgraph.

One folder a feature (``files``, ``viewer``, ``predict``, ``train``, ``batch``, ``models``,
``napari_plugin``), wired together by ``main_window`` and ``menus``; ``backend``, ``settings``,
``dialogs`` and the workers are shared by all.
"""

from __future__ import annotations

from labelfree_app.gui import qt_compat as _qt_compat  # noqa: F401 (applies binding work-arounds)
