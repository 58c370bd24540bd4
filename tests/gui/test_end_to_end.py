"""The window driving the real core: reader, registry, engine (tiny untrained networks)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
registry_module = pytest.importorskip("labelfree_app.models.registry")
pytest.importorskip("labelfree_app.core.engine")
pytest.importorskip("labelfree_app.io")

from labelfree_app.models.package import save_package, unet_manifest  # noqa: E402
from tests.gui.helpers import drop_files, run_and_wait, select_model, wait_loaded  # noqa: E402


def _install_tiny_models(folder: Path) -> None:
    from labelfree_app.models.diffusion.denoiser import ConditionalDenoiser
    from labelfree_app.models.unet import UNet

    torch.manual_seed(0)
    registry = registry_module.ModelRegistry(bundled_dir=folder / "no-bundled")
    diffusion_kwargs = {"dims": 2, "in_channels": 1, "out_channels": 1, "base_channels": 8, "channel_mults": [1, 2]}
    manifest = unet_manifest({"dims": 2}, model_id="tiny-diffusion", name="Tiny diffusion", target="DNA",
                             tile_shape=[32, 32], halo=[4, 4], kind="diffusion",
                             architecture={"id": "cond_denoiser_unet", "kwargs": diffusion_kwargs},
                             diffusion={"train_steps": 100, "steps": 4, "samples": 2, "sampler": "ddim", "eta": 0.0})
    registry.install(save_package(folder / "diff", manifest, ConditionalDenoiser(**diffusion_kwargs).state_dict()))
    unet_kwargs = {"dims": 2, "in_channels": 1, "out_channels": 1, "depth": 2, "base_channels": 4}
    manifest = unet_manifest(unet_kwargs, model_id="tiny-unet", name="Tiny U-Net", target="DNA",
                             tile_shape=[32, 32], halo=[4, 4], tta=True)
    registry.install(save_package(folder / "unet", manifest, UNet(**unet_kwargs).state_dict()))
    registry.set_default("DNA", "tiny-diffusion")


@pytest.fixture
def real_window(qtbot, tmp_path):
    from labelfree_app.gui.backend import CoreBackend
    from labelfree_app.gui.main_window import MainWindow
    from labelfree_app.gui.settings import GuiSettings

    _install_tiny_models(tmp_path / "sources")
    window = MainWindow(CoreBackend(), GuiSettings())
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: any(m.id == "tiny-diffusion" for m in window.models), timeout=20000)
    select_model(window, "tiny-diffusion")  # bundled demo models may be listed too
    yield window
    if window.runner.is_running():
        window.runner.cancel()
        window.runner.wait(10000)


@pytest.fixture
def brightfield_tiff(tmp_path) -> Path:
    from labelfree_app.io import write_image

    rng = np.random.default_rng(0)
    data = np.stack([rng.random((40, 48)), rng.random((40, 48))]).astype(np.float32)
    return write_image(tmp_path / "field.ome.tif", data, "CYX", channel_names=["DAPI", "Brightfield"])


def test_a_real_diffusion_run_fills_the_panels_and_exports(qtbot, real_window, brightfield_tiff, tmp_path):
    window = real_window
    drop_files(window, [brightfield_tiff])
    wait_loaded(qtbot, window)
    record = window.file_list.current()
    assert record.channel == 1  # Brightfield picked by name by the real reader
    window.controls.samples_spin.setValue(2)
    window.controls.steps_spin.setValue(3)
    started = time.monotonic()
    assert run_and_wait(qtbot, window, timeout=60000) == "done"
    print(f"\nreal tiny diffusion run: {time.monotonic() - started:.2f} s")
    result = record.result
    assert result.prediction.shape == (1, 1, 40, 48) and result.variance.shape == (1, 1, 40, 48)
    assert result.settings["samples"] == 2 and result.settings["steps"] == 3
    panels = window.panels
    np.testing.assert_allclose(panels.prediction_panel.plane, result.prediction[0, 0])
    np.testing.assert_allclose(panels.variance_panel.plane, result.variance[0, 0])
    assert panels.denoising_panel.plane is not None
    window.menus.compare_action.trigger()  # the file's DAPI channel is the ground truth
    assert np.isfinite(window.dialogs[-1].pearson_r)

    out = tmp_path / "out"
    out.mkdir()
    with qtbot.waitSignal(window.exported, timeout=20000) as blocker:
        window.results.export_current(out)
    from labelfree_app.io import read_image

    name = f"{brightfield_tiff.name.split('.')[0]}__{result.model_id}.ome.tif"  # the name `predict` gives
    exported = read_image(next(p for p in blocker.args[0] if p.name == name))
    np.testing.assert_allclose(exported.data[0], result.prediction[0], rtol=1e-6)


def test_a_real_unet_run_with_tta_shows_variance(qtbot, real_window, brightfield_tiff):
    window = real_window
    drop_files(window, [brightfield_tiff])
    wait_loaded(qtbot, window)
    select_model(window, "tiny-unet")
    window.controls.tta_box.setChecked(True)
    assert run_and_wait(qtbot, window, timeout=60000) == "done"
    record = window.file_list.current()
    assert record.result.variance is not None
    assert window.panels.denoising_panel.message.startswith("U-Net")
    assert window.panels.variance_panel.message == ""


def test_cancelling_a_real_run_stops_sampling_and_keeps_no_result(qtbot, real_window, brightfield_tiff):
    window = real_window
    drop_files(window, [brightfield_tiff])
    wait_loaded(qtbot, window)
    window.controls.samples_spin.setValue(50)
    window.controls.steps_spin.setValue(50)
    with qtbot.waitSignal(window.runner.finished, timeout=20000) as blocker:
        window.run_current()
        qtbot.waitUntil(lambda: window.controls.progress_bar.format().startswith("sampling"), timeout=20000)
        window.runner.cancel()
    assert blocker.args[1] == "cancelled"  # 50 x 50 steps would take minutes: it stopped between events
    assert window.runner.worker.status == "cancelled" and window.file_list.current().result is None


def test_a_real_diffusion_run_happens_off_the_gui_thread(qtbot, real_window, brightfield_tiff):
    """With the real engine the run's generator is consumed on another thread than the window's.

    Event-loop pauses during a real run are measured in benchmarks/gui_responsiveness.py."""
    import threading

    window = real_window
    consumed_on: list[int] = []
    original_run = window.backend.run

    def run(*args, **kwargs):
        consumed_on.append(threading.get_ident())
        return (yield from original_run(*args, **kwargs))

    window.backend.run = run
    drop_files(window, [brightfield_tiff])
    wait_loaded(qtbot, window)
    window.controls.samples_spin.setValue(2)
    window.controls.steps_spin.setValue(3)
    assert run_and_wait(qtbot, window, timeout=120000) == "done"
    assert consumed_on and consumed_on[0] != threading.get_ident()
    assert window.file_list.current().result is not None
