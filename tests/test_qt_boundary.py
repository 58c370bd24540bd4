"""The Qt boundary: nothing outside labelfree_app.gui may load PySide6, shiboken6 or pyqtgraph.

Every module of the package (found by walking it, so new modules are covered automatically)
is imported in a fresh interpreter; an import that fails fails this test too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# labelfree_app.__main__ starts the GUI, so it belongs with labelfree_app.gui.
EXCLUDED = ("labelfree_app.gui", "labelfree_app.__main__")
QT_PACKAGES = ("PySide6", "shiboken6", "pyqtgraph", "PyQt5", "PyQt6", "PySide2")

IMPORT_EVERYTHING = f"""
import importlib, json, pkgutil, sys

EXCLUDED = {EXCLUDED!r}
QT_PACKAGES = {QT_PACKAGES!r}

def excluded(name):
    return any(name == e or name.startswith(e + ".") for e in EXCLUDED)

def qt_loaded():
    return {{m for m in sys.modules if m.split(".")[0] in QT_PACKAGES}}

def walk(package):
    for info in sorted(pkgutil.iter_modules(package.__path__, package.__name__ + "."), key=lambda i: i.name):
        if excluded(info.name):
            continue
        before = qt_loaded()
        module = importlib.import_module(info.name)
        yield info.name, sorted(qt_loaded() - before)
        if info.ispkg:
            yield from walk(module)

import labelfree_app
report = {{"imported": ["labelfree_app"], "offenders": {{}}}}
if qt_loaded():
    report["offenders"]["labelfree_app"] = sorted(qt_loaded())
for name, new_qt in walk(labelfree_app):
    report["imported"].append(name)
    if new_qt:
        report["offenders"][name] = new_qt
print(json.dumps(report))
"""


def test_no_module_outside_gui_loads_qt() -> None:
    done = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"importing the package failed:\n{done.stderr[-4000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "labelfree_app.core.tiling" in report["imported"]
    assert not any(name.startswith("labelfree_app.gui") for name in report["imported"])
    offenders = {name: qt[:3] for name, qt in report["offenders"].items()}
    assert not offenders, f"these modules load Qt although they are outside labelfree_app.gui: {offenders}"
