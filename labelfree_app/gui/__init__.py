"""The desktop app: the only package that imports PySide6 and pyqtgraph."""

from __future__ import annotations

from labelfree_app.gui import qt_compat as _qt_compat  # noqa: F401 (applies binding work-arounds)
