"""Picture of the napari widget after a real run (``docs/screenshots/napari_plugin.png``).

    xvfb-run -a -s "-screen 0 1600x1000x24" python -m labelfree_app.gui.napari_plugin.screenshot \\
        resources/demo/demo_phase_neurons.ome.tif --model lf-nuclei-2d --out docs/screenshots/napari_plugin.png

Opens the file with this plugin's reader, docks the widget, predicts the first channel (with test-
time augmentation where the model offers it) and saves napari's whole window, layers in a grid.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path)
    parser.add_argument("--model", default="lf-nuclei-2d")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots/napari_plugin.png"))
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)

    import napari
    from PySide6.QtWidgets import QApplication

    viewer = napari.Viewer(title="LabelFree in napari")
    viewer.window._qt_window.resize(1500, 900)
    layers = viewer.open(str(args.image), plugin="labelfree_app")
    _, widget = viewer.window.add_plugin_dock_widget("labelfree_app", "Predict fluorescence")
    widget.layer_combo.setCurrentText(layers[0].name)
    controls = widget.controls
    model = next(m for m in controls._models if m.id == args.model)
    controls.target_combo.setCurrentIndex(controls.target_combo.findData(model.target))
    controls.model_combo.setCurrentIndex(controls.model_combo.findData(args.model))
    controls.tta_box.setChecked(True)
    if not widget.run():
        return 1
    deadline = time.monotonic() + args.timeout
    while widget.status == "" and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.02)
    widget.wait()
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)
    if widget.status != "done":
        print(f"prediction ended: {widget.status or 'timed out'}", file=sys.stderr)
        return 1
    viewer.canvas.grid.enabled = True  # input (and the real stain, if the file has one), prediction, variance
    viewer.layers.selection.active = viewer.layers["prediction"]
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.out), canvas_only=False, flash=False)
    print(args.out)
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
