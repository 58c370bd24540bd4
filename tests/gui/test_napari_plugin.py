"""The napari plugin's tests run in a process of their own (tests/gui/napari_cases.py).

napari's canvas needs OpenGL on an X display and leaves Qt/GL state behind that crashed later Qt tests
of this suite in the same process, and napari's pytest plugins would otherwise wrap every test of the
suite; so the main run blocks those plugins (pyproject addopts) and this test runs the cases apart.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CASES = Path(__file__).with_name("napari_cases.py")


def test_the_napari_plugin_cases_pass_in_their_own_process() -> None:
    pytest.importorskip("napari")
    pytest.importorskip("npe2")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra --strict-markers",
         str(CASES)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=1200)
    tail = (done.stdout[-6000:] + "\n" + done.stderr[-3000:]).strip()
    if done.returncode == 5 or " skipped" in tail.splitlines()[-1] and " passed" not in tail.splitlines()[-1]:
        pytest.skip(f"the napari cases skipped: {tail.splitlines()[-1]}")
    assert done.returncode == 0, tail
    assert " passed" in tail.splitlines()[-1], tail
