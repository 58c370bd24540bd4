"""The Run panel's Scale box reaches the engine: a typed pixel size resamples, the search box searches."""

from __future__ import annotations

import numpy as np

from labelfree_app.core.engine import PredictionEngine
from labelfree_app.core.settings import PredictSettings
from labelfree_app.gui.predict.run_controls import RunControls
from labelfree_app.io.image import Image
from tests.factories import make_unet_package


def test_a_typed_pixel_size_and_the_search_box_become_the_runs_settings(qtbot, tmp_path):
    controls = RunControls()
    qtbot.addWidget(controls)
    assert PredictSettings.from_mapping(controls.settings()).scale == "pixel-size"
    assert PredictSettings.from_mapping(controls.settings()).pixel_size_um is None  # "from the file"
    controls.scale_box.pixel_spin.setValue(1.0)
    controls.scale_box.search_box.setChecked(True)
    settings = PredictSettings.from_mapping(controls.settings())
    assert (settings.scale, settings.pixel_size_um) == ("search", 1.0)

    engine = PredictionEngine(make_unet_package(tmp_path, training={"settings": {"pixel_size_um": 0.5}}), device="cpu")
    image = Image(np.random.default_rng(0).random((1, 1, 64, 64), dtype=np.float32), "CZYX", ("BF",))
    result = engine.predict(image, settings)
    assert result.settings["scale"]["factor"] == 2.0  # the typed size wins over searching
    assert result.prediction.shape[-2:] == (64, 64)
