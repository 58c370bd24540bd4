"""What the trust estimate adds to a prediction's time: a 1024² U-Net and a 512² diffusion run.

    python benchmarks/bench_trust.py [--repeats 5]

The bundled lf-nuclei-2d and lf-nuclei-2d-diffusion predict the same image with the estimate on
and off (``TrustRecorder.enabled``), alternating so that load on the machine hits both alike;
prints each run's seconds, the medians and the added share. The estimate's cost is the U-Net's
flipped second look at a central crop (≤15 % of the image, ≥256² px) plus a few reductions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed(engine, image, settings, enabled: bool) -> float:
    from labelfree_app.core import trust_recorder

    original = trust_recorder.TrustRecorder.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.enabled = self.enabled and enabled

    trust_recorder.TrustRecorder.__init__ = init
    try:
        start = time.perf_counter()
        result = engine.predict(image, settings)
        seconds = time.perf_counter() - start
    finally:
        trust_recorder.TrustRecorder.__init__ = original
    if enabled and not engine._trust.features:
        raise SystemExit("the estimate did not run: no features were computed")
    return seconds


def case(model: str, size: int, settings, repeats: int) -> None:
    from labelfree_app.core.engine import PredictionEngine
    from labelfree_app.io import read_image
    from labelfree_app.io.image import Image
    from labelfree_app.models.package import load_package

    demo = np.asarray(read_image(ROOT / "resources" / "demo" / "demo_phase_neurons.ome.tif").data[0, 0], np.float32)
    plane = np.tile(demo, (size // demo.shape[0] + 1, size // demo.shape[1] + 1))[:size, :size]
    image = Image.from_array(np.ascontiguousarray(plane)[None, None], "CZYX")
    engine = PredictionEngine(load_package(ROOT / "resources" / "models" / model), device="cpu")
    timed(engine, image, settings, True)  # warm-up: loads the network (and builds the ONNX file)
    on, off = [], []
    for _ in range(repeats):
        off.append(timed(engine, image, settings, False))
        on.append(timed(engine, image, settings, True))
    added = statistics.median(on) / statistics.median(off) - 1
    print(f"{model} {size}²: without {statistics.median(off):.2f} s (runs {', '.join(f'{v:.2f}' for v in off)}), "
          f"with {statistics.median(on):.2f} s (runs {', '.join(f'{v:.2f}' for v in on)}): "
          f"+{100 * added:.1f} %", flush=True)


def main() -> int:
    import torch

    from labelfree_app.core.settings import PredictSettings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=["unet", "diffusion"], help="time one of the two cases")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.only != "diffusion":
        case("lf-nuclei-2d", 1024, PredictSettings(), args.repeats)
    if args.only != "unet":
        case("lf-nuclei-2d-diffusion", 512, PredictSettings(), max(1, args.repeats // 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
