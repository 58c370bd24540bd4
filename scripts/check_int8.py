"""Check each bundled U-Net's int8 network against float32 on held-out data and record the verdict.

    python scripts/check_int8.py                       # every bundled U-Net
    python scripts/check_int8.py lf-nuclei-2d          # one

For each model: calibrate activation ranges on its own training inputs (the pairs its manifest
records, or for the ISL models the training quadrants of the ISL stack: all but the test quadrant
512:1024,512:1024), write them beside the weights (``int8_calibration.json``), quantize, predict the
held-out images with both networks through the engine (the same tiling and normalization as
``labelfree predict``) and write ``metrics["int8"]`` into the manifest (the weights are untouched):
r between the two predictions (lowest image), the mean held-out r of each with the real stain, the
sha256 of the ranges and of the int8 network, and ``passed`` (``models.onnx_int8.judge``).

Held-out data (from ../shared/data, never copied into the repository):
| lf-nuclei-2d | the test fields of its four training sources (scripts/train_generalist.py test_items) |
| isl-dapi-unet, isl-map2-unet | the four 256x256 crops of the ISL test quadrant (scripts/calibrate_trust.py isl_items) |
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import calibrate_trust as cal  # noqa: E402
import train_generalist as gen  # noqa: E402
from labelfree_app.core.engine import PredictionEngine, PredictSettings  # noqa: E402
from labelfree_app.core.inputs import prepare_input  # noqa: E402
from labelfree_app.core.metrics import pearson_r  # noqa: E402
from labelfree_app.core.runners import OnnxUNetPredictor  # noqa: E402
from labelfree_app.models import onnx_int8  # noqa: E402
from labelfree_app.models.architectures import TileShape  # noqa: E402
from labelfree_app.models.manifest import Manifest  # noqa: E402
from labelfree_app.models.onnx_backend import OnnxModule, read_verified_cache, unet_cache_path  # noqa: E402
from labelfree_app.models.package import load_package  # noqa: E402
from labelfree_app.training.config import PairSpec  # noqa: E402
from labelfree_app.training.datasets import read_input_image, read_target_zyx  # noqa: E402

MODELS = ROOT / "resources" / "models"
UNETS = ("lf-nuclei-2d", "isl-dapi-unet", "isl-map2-unet")
CROPS_PER_MODEL = 24
CROP = 256


def training_inputs(model_id: str, manifest: Manifest) -> tuple[list[PairSpec], str]:
    """The model's own training inputs, and their description."""
    recorded = [PairSpec(**{k: v for k, v in p.items() if k in ("input", "target", "plane", "pixel_size_um")})
                for p in ((manifest.training.settings if manifest.training else {}).get("pairs") or [])]
    found = [p for p in recorded if Path(p.input).is_file()]
    if found and len(found) == len(recorded):
        return found, f"{len(found)} training pairs recorded in its manifest"
    if model_id.startswith("isl-"):  # its run folder is gone: the same training quadrants of the ISL stack
        stain = "DAPI" if "dapi" in model_id else "MAP2"
        spec = PairSpec(input=str(gen.ISL / "z_depth-0_PHASE_CONTRAST.png"),
                        target=str(gen.ISL / f"depth_computation-MAXPROJECT_{stain}_CONFOCAL.png"))
        boxes = {"top": (slice(0, 512), slice(0, 1024)), "bottom_left": (slice(512, 1024), slice(0, 512))}
        return ([cal.crop_pair(f"int8_{stain}_{name}", spec, box, stack=True) for name, box in boxes.items()],
                "the ISL training quadrants (all but 512:1024,512:1024)")
    raise SystemExit(f"{model_id}: its training inputs are not here")


def calibration_tiles(engine: PredictionEngine, pairs: list[PairSpec], count: int) -> list[np.ndarray]:
    """``count`` random CROP² tiles of the training inputs, normalized as the engine normalizes an image."""
    rng = np.random.default_rng(0)
    tiles = []
    for k in range(count):
        spec = pairs[k % len(pairs)]
        pixels = engine._select_pixels(read_input_image(spec), PredictSettings(channel=spec.input_channel))
        x = engine._normalize(prepare_input(pixels, engine.input_spec).parts[0])  # (C, Y, X)
        y0, x0 = (int(rng.integers(0, max(1, n - CROP + 1))) for n in x.shape[-2:])
        tiles.append(np.ascontiguousarray(x[None, :, y0:y0 + CROP, x0:x0 + CROP]))
    return tiles


def held_out(model_id: str) -> tuple[list[tuple[PairSpec, str | None]], str]:
    if model_id == "lf-nuclei-2d":
        items = [(e.spec, e.region) for s in ("isl", "sephace", "celldetective", "mlcp")
                 for e in gen.test_items(s, gen.WORK)]
        return items, "the test fields of isl, sephace, celldetective and mlcp (train_generalist.test_items)"
    stain = "DAPI" if "dapi" in model_id else "MAP2"
    return [(spec, None) for _, spec in cal.isl_items(stain)], "the four ISL test-quadrant crops (isl_items)"


def predict(engine: PredictionEngine, spec: PairSpec) -> np.ndarray:
    settings = PredictSettings(channel=spec.input_channel, precision="fp32", units="zscore")
    return np.asarray(engine.predict(read_input_image(spec), settings).prediction[0], dtype=np.float64)


def region_of(array: np.ndarray, region: str | None) -> np.ndarray:
    if not region:
        return array
    (y0, y1), (x0, x1) = ((int(a) for a in part.split(":")) for part in region.split(","))
    return array[..., y0:y1, x0:x1]


def check(model_id: str) -> dict:
    folder = MODELS / model_id
    package = load_package(folder)
    manifest = package.manifest
    fp32 = PredictionEngine(package, device="cpu")
    cache = unet_cache_path(manifest)
    if read_verified_cache(cache) is None:
        from labelfree_app.core.unet_runner import UNetPredictor

        UNetPredictor(package, backend="onnx")._onnx_module()
    fp32_bytes = read_verified_cache(cache)
    assert fp32_bytes is not None
    pairs, calibration_data = training_inputs(model_id, manifest)
    started = time.perf_counter()
    ranges = onnx_int8.calibrate(fp32_bytes, calibration_tiles(fp32, pairs, CROPS_PER_MODEL))
    network = onnx_int8.quantize(fp32_bytes, ranges)
    assert onnx_int8.quantize(fp32_bytes, ranges) == network, "quantization is not deterministic"
    print(f"{model_id}: calibrated and quantized in {time.perf_counter() - started:.1f} s", flush=True)

    # The int8 engine: the same engine with the candidate network as its runner (no verdict exists yet).
    int8 = PredictionEngine(package, device="cpu")
    from labelfree_app.core.threads import cpu_threads
    from labelfree_app.models.architectures import required_multiple

    module = OnnxModule.__new__(OnnxModule)
    module._configure(["input"], cpu_threads(), None)
    module.session = module._session(network)
    arch = manifest.architecture
    shape = TileShape(int(manifest.dims), int(manifest.input.channels), int(manifest.output.channels),
                      int(required_multiple(arch.id, arch.kwargs)))
    int8._runner = OnnxUNetPredictor(module, shape, package, precision="int8")
    int8._runner_for = "fp32"  # runs asked for in fp32 keep this runner

    items, held = held_out(model_id)
    between, stain_fp32, stain_int8, rows = [], [], [], []
    for spec, region in items:
        a, b = predict(fp32, spec), predict(int8, spec)
        target = read_target_zyx(spec)  # r does not depend on the units
        a, b, target = (region_of(v, region) for v in (a, b, target))
        row = (float(pearson_r(a, b)), float(pearson_r(a, target)), float(pearson_r(b, target)))
        between.append(row[0]), stain_fp32.append(row[1]), stain_int8.append(row[2])
        rows.append({"image": Path(spec.input).name + (f" plane {spec.plane}" if spec.plane is not None else ""),
                     "r_fp32_int8": round(row[0], 5), "r_stain_fp32": round(row[1], 4),
                     "r_stain_int8": round(row[2], 4)})
        print(f"  {rows[-1]}", flush=True)
    verdict = {
        "passed": onnx_int8.judge(between, stain_fp32, stain_int8),
        "r_fp32_int8": round(min(between), 5),
        "r_stain_fp32": round(float(np.mean(stain_fp32)), 4),
        "r_stain_int8": round(float(np.mean(stain_int8)), 4),
        "held_out": f"{held}; {len(items)} images",
        "calibration": f"min/max activation ranges over {CROPS_PER_MODEL} random {CROP}² tiles of "
                       f"{calibration_data}",
        "calibration_sha256": hashlib.sha256(ranges).hexdigest(),
        "int8_sha256": hashlib.sha256(network).hexdigest(),
        "rule": f"r between int8 and fp32 ≥ {onnx_int8.R_WITH_FP32} on every image; mean r with the stain "
                f"within {onnx_int8.STAIN_TOLERANCE}",
    }
    (folder / onnx_int8.CALIBRATION_FILE).write_bytes(ranges)
    data = json.loads((folder / "manifest.json").read_text())
    data.setdefault("metrics", {})[onnx_int8.METRIC] = verdict
    Manifest.from_dict(data)  # still a valid manifest
    (folder / "manifest.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return {"model": model_id, **{k: verdict[k] for k in ("passed", "r_fp32_int8", "r_stain_fp32", "r_stain_int8")},
            "images": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(UNETS))
    args = parser.parse_args()
    for model_id in args.models:
        result = check(model_id)
        print(json.dumps({k: v for k, v in result.items() if k != "images"}), flush=True)


if __name__ == "__main__":
    main()
