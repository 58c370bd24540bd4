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


def test_result_layers_carry_the_trust_estimate_and_a_hidden_trust_map_at_the_input_place() -> None:
    import numpy as np

    from labelfree_app.core.events import PredictionResult
    from labelfree_app.core.trust import TrustEstimate
    from labelfree_app.gui.napari_plugin.layers import Placement, result_layers

    estimate = TrustEstimate(0.42, 0.3, 0.55, "not trustworthy", "Why: it is hazy.", "Stain a few fields.")
    familiar = np.linspace(0, 1, 48 * 64, dtype=np.float32).reshape(1, 1, 48, 64)
    result = PredictionResult(np.zeros((1, 1, 48, 64), np.float32), model_id="m", trust=estimate,
                              trust_map=familiar)
    placement = Placement("bf", "YX", scale=(0.5, 0.25), translate=(3.0, 4.0))
    layers = {kwargs["name"]: (data, kwargs) for data, kwargs, _ in result_layers(result, placement)}
    assert set(layers) == {"prediction", "trust"}
    assert layers["prediction"][1]["metadata"]["labelfree"]["trust"] == estimate.to_dict()
    data, kwargs = layers["trust"]
    assert data.shape == (48, 64) and np.array_equal(data, familiar[0, 0])
    assert kwargs["visible"] is False and kwargs["contrast_limits"] == (0.0, 1.0)
    assert kwargs["scale"] == (0.5, 0.25) and kwargs["translate"] == (3.0, 4.0)
    untrusted = PredictionResult(np.zeros((1, 1, 48, 64), np.float32), model_id="m")
    (only,) = result_layers(untrusted, placement)
    assert only[1]["name"] == "prediction" and only[1]["metadata"]["labelfree"]["trust"] is None
