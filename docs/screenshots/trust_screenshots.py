"""The README's trust screenshots: a real prediction with its trust note (and trust map), under Xvfb.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/trust_screenshots.py \\
        resources/demo/demo_phase_neurons.ome.tif docs/screenshots/trust_good.png
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/trust_screenshots.py \\
        IMAGE docs/screenshots/trust_untrustworthy.png --trust-map

The window predicts IMAGE with the real engine (``--model``, default lf-nuclei-2d) through
``labelfree_app.gui.screenshot.ScreenshotRun``. Without ``resources/trust_calibration.json`` the
engine estimates nothing; ``--stand-in-calibration`` then fits a stand-in U-Net trust model on the
rows ``scripts/calibrate_trust.py collect`` left in ``build/trust/rows.json`` and says so. A model
draws a trust map only when its manifest records its training inputs (``trust.input_profile``);
``--stand-in-profile`` fits one in memory as ``scripts/calibrate_trust.py profiles`` does (manifests
untouched) and says so. User folders go to a temporary LABELFREE_HOME, so nothing is installed or
left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNET_FEATURES = ("calibrated_r",)


def stand_in_calibration() -> str:
    """Fit a U-Net trust model on build/trust/rows.json and make the engine use it; returns a line
    saying so ('' when the bundled calibration exists and is used)."""
    from labelfree_app.core import trust_recorder
    from labelfree_app.core.trust import TrustModel

    if trust_recorder.bundled_calibration():
        return ""
    rows = [r for r in json.loads((ROOT / "build" / "trust" / "rows.json").read_text()) if r["family"] == "unet"
            and all(name in r["features"] for name in UNET_FEATURES)]
    model = TrustModel.fit([r["features"] for r in rows], [r["r"] for r in rows], UNET_FEATURES,
                           fitted_on=f"stand-in: {len(rows)} rows of build/trust/rows.json")
    trust_recorder.bundled_calibration = lambda path=None: {"unet": model}
    return f"no resources/trust_calibration.json: a stand-in U-Net calibration fitted on {len(rows)} collected rows"


def stand_in_profile(model_id: str) -> str:
    """Give ``model_id`` the input profile ``calibrate_trust.py profiles`` would write, in memory only;
    returns a line saying so ('' when its manifest has one)."""
    from labelfree_app.core import trust_recorder
    from labelfree_app.models.registry import ModelRegistry

    manifest = ModelRegistry().get(model_id).manifest.to_dict()
    if (manifest.get("trust") or {}).get("input_profile"):
        return ""
    sys.path.insert(0, str(ROOT / "scripts"))
    import calibrate_trust as cal  # noqa: E402 (a script beside the package)

    sources = ("isl", "sephace", "celldetective", "mlcp")  # what the bundled lf-nuclei-2d was trained on
    profile = cal.profile_for("generalist", sources, cal.input_method(manifest))
    original = trust_recorder.TrustRecorder.__init__

    def init(self, manifest, calibration=None):  # type: ignore[no-untyped-def]
        original(self, manifest, calibration)
        if manifest.get("id") == model_id and self.profile is None:
            self.profile = profile

    trust_recorder.TrustRecorder.__init__ = init
    return f"{model_id} has no input profile: a stand-in fitted on its training sources ({', '.join(sources)})"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", default="lf-nuclei-2d")
    parser.add_argument("--trust-map", action="store_true", help="turn the trust map on before the picture")
    parser.add_argument("--stand-in-calibration", action="store_true",
                        help="without the bundled calibration, fit one on build/trust/rows.json")
    parser.add_argument("--stand-in-profile", action="store_true",
                        help="without an input profile in the model's manifest, fit one in memory")
    parser.add_argument("--size", default="1600x900")
    args = parser.parse_args(argv)
    os.environ["LABELFREE_HOME"] = tempfile.mkdtemp(prefix="labelfree-shot-")
    sys.path.insert(0, str(ROOT))

    from PySide6.QtWidgets import QApplication

    import labelfree_app.gui  # noqa: F401 (Qt binding work-arounds)
    from labelfree_app.gui.backend import CoreBackend
    from labelfree_app.gui.main_window import MainWindow
    from labelfree_app.gui.screenshot import ScreenshotRun
    from labelfree_app.gui.settings import GuiSettings

    if args.stand_in_calibration:
        said = stand_in_calibration()
        if said:
            print(said)
    if args.stand_in_profile:
        said = stand_in_profile(args.model)
        if said:
            print(said)
    app = QApplication.instance() or QApplication([])
    window = MainWindow(CoreBackend(), GuiSettings())
    width, height = (int(v) for v in args.size.lower().split("x"))
    window.resize(width, height)
    window.show()
    window.open_paths([args.image.resolve()])

    def before_save(win: MainWindow) -> None:
        if args.trust_map and win.trust.map_view.box.isEnabled():
            win.trust.map_view.set_shown(True)

    shot = ScreenshotRun(window, args.out.resolve(), model_id=args.model, before_save=before_save)
    shot.start()
    code = app.exec()
    record = window.file_list.current()
    result = record.result if record is not None else None
    trust = getattr(result, "trust", None)
    print(f"{args.out}: {shot.status}; {trust.summary() if trust else 'no trust estimate'}; "
          f"trust map {'yes' if getattr(result, 'trust_map', None) is not None else 'none'}")
    window.shut_down()
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
