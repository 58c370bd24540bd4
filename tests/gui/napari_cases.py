"""The napari plugin: the dock widget runs the real engine on a layer; the reader; the npe2 manifest."""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

napari = pytest.importorskip("napari")
npe2 = pytest.importorskip("npe2")

from labelfree_app.gui.napari_plugin import layers as plugin_layers  # noqa: E402
from labelfree_app.gui.napari_plugin import widget as plugin_widget  # noqa: E402
from labelfree_app.gui.napari_plugin.reader import get_reader  # noqa: E402
from labelfree_app.gui.napari_plugin.widget import LabelFreeWidget  # noqa: E402
from labelfree_app.models.registry import ModelRegistry  # noqa: E402
from tests.factories import constant_calibration, make_diffusion_package, make_unet_package, trust_block  # noqa: E402
from tests.synthetic_cells import render_cells  # noqa: E402

MANIFEST = Path(plugin_layers.__file__).with_name("napari.yaml")
RUN_TIMEOUT_MS = 120_000


def _end_with_this_process() -> None:
    """In the Xvfb child: get SIGTERM when pytest exits (Qt still holds the X connection until then)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@pytest.fixture(scope="module", autouse=True)
def gl_display() -> str:
    """napari's canvas needs OpenGL, which Qt's offscreen platform gets from an X display: use the one
    given (DISPLAY) or start a private Xvfb that lives as long as this test process; skip where there
    is neither."""
    if os.environ.get("DISPLAY"):
        return os.environ["DISPLAY"]
    xvfb = shutil.which("Xvfb")
    if xvfb is None or not sys.platform.startswith("linux"):
        pytest.skip("napari's canvas needs OpenGL: set DISPLAY or install Xvfb (apt-get install xvfb)")
    # A display number of our own: a finished run's Xvfb may still be removing the socket of a low one.
    wanted = next(n for n in range(100 + os.getpid() % 30000, 70000) if not Path(f"/tmp/.X{n}-lock").exists())
    read_end, write_end = os.pipe()
    subprocess.Popen([xvfb, f":{wanted}", "-displayfd", str(write_end), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                     pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     preexec_fn=_end_with_this_process)
    os.close(write_end)
    received = b""
    try:  # Xvfb writes the number, then "\n", then closes: closing our end before the "\n" kills it
        while not received.endswith(b"\n") and select.select([read_end], [], [], 20)[0]:
            chunk = os.read(read_end, 16)
            if not chunk:
                break
            received += chunk
    finally:
        os.close(read_end)
    number = received.decode().strip()
    if not number:
        pytest.skip("Xvfb did not start, and napari's canvas needs OpenGL")
    os.environ["DISPLAY"] = f":{number}"
    return os.environ["DISPLAY"]


@pytest.fixture
def installed(tmp_path: Path) -> ModelRegistry:
    """A registry (under the test's LABELFREE_HOME) with a small U-Net that offers TTA."""
    registry = ModelRegistry(bundled_dir=tmp_path / "no-bundled")
    registry.install(make_unet_package(tmp_path / "src", model_id="test-unet", tta=True).origin, smoke_test=False)
    return registry


@pytest.fixture
def errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(plugin_widget, "show_error", shown.append)
    return shown


def _widget(viewer, registry: ModelRegistry) -> LabelFreeWidget:
    widget = LabelFreeWidget(viewer)
    widget.backend._registry = registry  # the fixture's registry (no bundled models)
    widget.refresh_models()
    viewer.window.add_dock_widget(widget, name="LabelFree")
    return widget


def _select(widget: LabelFreeWidget, model_id: str) -> None:
    controls = widget.controls
    target = next(m.target for m in controls._models if m.id == model_id)
    controls.target_combo.setCurrentIndex(controls.target_combo.findData(target))
    controls.model_combo.setCurrentIndex(controls.model_combo.findData(model_id))
    assert controls.model_id() == model_id


def _run_to_end(qtbot, widget: LabelFreeWidget) -> None:
    assert widget.run()
    qtbot.waitUntil(lambda: widget.status != "", timeout=RUN_TIMEOUT_MS)
    assert widget.wait(10_000)


def test_widget_contribution_opens_and_lists_the_installed_models(make_napari_viewer, installed) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.float32), name="bright-field")
    dock, widget = viewer.window.add_plugin_dock_widget("labelfree_app", "Predict fluorescence")
    assert isinstance(widget, LabelFreeWidget)
    widget.backend._registry = installed
    widget.refresh_models()
    assert [m.id for m in widget.controls._models] == ["test-unet"]
    assert widget.layer_combo.currentText() == "bright-field"


def test_widget_predicts_a_layer_with_a_unet_and_adds_prediction_and_variance_at_the_layer_scale(
        make_napari_viewer, qtbot, installed, errors) -> None:
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    viewer.add_image(rng.random((48, 64), dtype=np.float32), name="bright-field", scale=(0.5, 0.25),
                     translate=(3.0, 4.0))
    widget = _widget(viewer, installed)
    _select(widget, "test-unet")
    assert widget.controls.unet_box.isVisibleTo(widget) and not widget.controls.diffusion_box.isVisibleTo(widget)
    widget.controls.tta_box.setChecked(True)
    _run_to_end(qtbot, widget)
    assert widget.status == "done", errors
    prediction, variance = viewer.layers["prediction"], viewer.layers["variance"]
    for layer in (prediction, variance):
        assert layer.data.shape == (48, 64)
        assert np.isfinite(layer.data).all()
        assert tuple(layer.scale) == (0.5, 0.25) and tuple(layer.translate) == (3.0, 4.0)
        assert layer.metadata["labelfree"]["model_id"] == "test-unet"
    assert prediction.metadata["labelfree"]["settings"]["tta"] is True
    assert variance.data.max() > 0  # the augmentations disagree somewhere
    assert widget.layer_combo.findText("prediction") == -1  # outputs are not offered as inputs
    assert widget.controls.progress_bar.format() == "done"

    _run_to_end(qtbot, widget)  # a second run replaces the layers instead of piling up copies
    assert [layer.name for layer in viewer.layers] == ["bright-field", "prediction", "variance"]


def test_widget_predicts_the_shown_time_point_of_a_time_series_layer(make_napari_viewer, qtbot, installed,
                                                                     errors) -> None:
    viewer = make_napari_viewer()
    data = np.random.default_rng(1).random((3, 1, 32, 32), dtype=np.float32)  # T Z Y X
    viewer.add_image(data, name="movie", scale=(2.0, 1.0, 0.5, 0.5))
    viewer.dims.set_current_step(0, 2)
    widget = _widget(viewer, installed)
    _run_to_end(qtbot, widget)
    assert widget.status == "done", errors
    layer = viewer.layers["prediction"]
    assert layer.data.shape == (1, 1, 32, 32)
    assert tuple(layer.scale) == (2.0, 1.0, 0.5, 0.5) and layer.translate[0] == 4.0  # at t = 2
    assert "variance" not in viewer.layers  # no TTA asked: a U-Net gives no variance


def test_diffusion_run_adds_the_denoising_frames_as_a_leading_axis(make_napari_viewer, qtbot, tmp_path,
                                                                   errors) -> None:
    registry = ModelRegistry(bundled_dir=tmp_path / "no-bundled")
    registry.install(make_diffusion_package(tmp_path / "src", steps=3, samples=2).origin, smoke_test=False)
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(2).random((32, 32), dtype=np.float32), name="bf", scale=(0.3, 0.3))
    widget = _widget(viewer, registry)
    assert widget.controls.diffusion_box.isVisibleTo(widget)
    widget.controls.samples_spin.setValue(2)
    widget.controls.steps_spin.setValue(3)
    _run_to_end(qtbot, widget)
    assert widget.status == "done", errors
    frames = viewer.layers["denoising frames"]
    assert frames.data.ndim == 3 and frames.data.shape[1:] == (32, 32) and frames.data.shape[0] >= 2
    assert tuple(frames.scale) == (1.0, 0.3, 0.3)
    assert viewer.layers["variance"].data.shape == (32, 32)
    assert viewer.layers["prediction"].metadata["labelfree"]["settings"]["samples"] == 2


def test_a_profiled_model_adds_a_hidden_trust_map_and_the_estimate_and_a_later_run_clears_it(
        make_napari_viewer, qtbot, tmp_path, errors, monkeypatch) -> None:
    from labelfree_app.core import trust_recorder

    monkeypatch.setattr(trust_recorder, "bundled_calibration", lambda path=None: constant_calibration(0.3))
    warnings: list[str] = []
    monkeypatch.setattr(plugin_widget, "show_warning", warnings.append)
    registry = ModelRegistry(bundled_dir=tmp_path / "no-bundled")
    registry.install(make_unet_package(tmp_path / "src", model_id="trusty", trust=trust_block()).origin,
                     smoke_test=False)
    registry.install(make_unet_package(tmp_path / "src", model_id="plain").origin, smoke_test=False)
    viewer = make_napari_viewer()
    viewer.add_image(render_cells((48, 64), seed=4).brightfield, name="bf", scale=(0.5, 0.5))
    widget = _widget(viewer, registry)
    _select(widget, "trusty")
    _run_to_end(qtbot, widget)
    assert widget.status == "done", errors
    trust = viewer.layers["trust"]
    assert trust.data.shape == (48, 64) and not trust.visible
    assert tuple(trust.contrast_limits) == (0.0, 1.0) and tuple(trust.scale) == (0.5, 0.5)
    assert 0.0 <= float(np.min(trust.data)) <= float(np.max(trust.data)) <= 1.0
    assert viewer.layers["prediction"].metadata["labelfree"]["trust"]["level"] == "not trustworthy"
    assert warnings and warnings[0].startswith("Expected r 0.30")
    assert widget.layer_combo.findText("trust") == -1  # not offered as an input
    _select(widget, "plain")
    _run_to_end(qtbot, widget)
    assert widget.status == "done", errors
    assert "trust" not in viewer.layers  # the map described the other model's prediction


def test_cancel_stops_the_run_and_adds_no_layer(make_napari_viewer, qtbot, installed, errors) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.float32), name="bf")
    widget = _widget(viewer, installed)
    assert widget.run()
    assert widget.controls.cancel_button.isEnabled()
    widget.controls.cancel_button.click()
    qtbot.waitUntil(lambda: widget.status != "", timeout=RUN_TIMEOUT_MS)
    assert widget.status == "cancelled"
    assert [layer.name for layer in viewer.layers] == ["bf"]
    assert widget.controls.run_button.isEnabled() and not errors


def test_engine_errors_reach_napari_as_one_sentence(make_napari_viewer, qtbot, tmp_path, errors) -> None:
    registry = ModelRegistry(bundled_dir=tmp_path / "no-bundled")
    registry.install(make_unet_package(tmp_path / "src", model_id="two-in", in_channels=2).origin, smoke_test=False)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.float32), name="bf")
    widget = _widget(viewer, registry)
    _run_to_end(qtbot, widget)
    assert widget.status == "failed"
    assert len(errors) == 1 and "channel" in errors[0] and errors[0].endswith(".")
    assert [layer.name for layer in viewer.layers] == ["bf"]


def test_a_layer_with_too_many_dimensions_is_refused_before_running(make_napari_viewer, installed,
                                                                   errors) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((2, 2, 2, 16, 16), np.float32), name="5d")
    widget = _widget(viewer, installed)
    assert not widget.run()
    assert len(errors) == 1 and "5 dimensions" in errors[0]


def test_reader_opens_an_ome_tiff_with_channel_names_and_pixel_sizes(tmp_path: Path) -> None:
    path = tmp_path / "cells.ome.tif"
    data = np.random.default_rng(3).integers(0, 4000, (2, 5, 24, 32), dtype=np.uint16)  # C Z Y X
    tifffile.imwrite(path, data, ome=True, metadata={
        "axes": "CZYX", "Channel": {"Name": ["Brightfield", "DAPI"]},
        "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25, "PhysicalSizeZ": 1.5})
    reader = get_reader(str(path))
    assert reader is not None
    layers = reader(str(path))
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["Brightfield", "DAPI"]
    for (array, kwargs, kind), expected in zip(layers, data):
        assert kind == "image"
        np.testing.assert_array_equal(np.asarray(array), expected)
        assert kwargs["scale"] == (1.5, 0.25, 0.25)
        assert kwargs["units"] == ("micrometer",) * 3
    assert get_reader(str(tmp_path / "plain.png")) is None


def test_reader_opens_an_ome_zarr_lazily_as_one_layer_per_channel(tmp_path: Path) -> None:
    from labelfree_app.io.ome_zarr import write_ome_zarr

    data = np.random.default_rng(4).random((2, 1, 40, 48), dtype=np.float32)
    path = write_ome_zarr(tmp_path / "plate.ome.zarr", data, "CZYX", channel_names=["phase", "nuclei"],
                          pixel_size_um={"Y": 0.65, "X": 0.65})
    layers = get_reader(str(path))(str(path))
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["phase", "nuclei"]
    array, kwargs, _ = layers[1]
    assert not isinstance(array, np.ndarray) and array.shape == (40, 48)
    np.testing.assert_allclose(np.asarray(array), data[1, 0])
    assert kwargs["scale"] == (0.65, 0.65)


def test_npe2_manifest_validates_and_is_the_package_entry_point() -> None:
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(MANIFEST)
    manifest.validate_imports()
    assert {w.display_name for w in manifest.contributions.widgets} == {"Predict fluorescence"}
    assert manifest.contributions.readers[0].accepts_directories
    points = importlib.metadata.entry_points(group="napari.manifest")
    assert any(p.value == "labelfree_app.gui.napari_plugin:napari.yaml" for p in points)
    npe2_cli = shutil.which("npe2", path=str(Path(sys.executable).parent))
    assert npe2_cli is not None
    done = subprocess.run([npe2_cli, "validate", "labelfree_app", "--imports"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "valid" in done.stdout, done.stdout + done.stderr
