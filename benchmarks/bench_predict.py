"""Time and memory of U-Net prediction through the engine, and the CPU backends compared.

    python benchmarks/bench_predict.py                 # 1024², 2048², 32×512×512, backend ratios
    python benchmarks/bench_predict.py --large         # also 8192² (peak RSS must stay ≤ 2 GB)

Every case runs in a fresh subprocess so its peak RSS (VmHWM) is its own. The network is
fnet-sized (depth 4, 32 base channels) with random weights: speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import peak_rss_mb  # noqa: E402


def gemm_gflops(n: int = 2048, repeats: int = 10) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def make_package(folder: Path, dims: int) -> Path:
    import torch

    from labelfree_app.models.package import save_package, unet_manifest
    from labelfree_app.models.unet import UNet

    torch.manual_seed(0)
    net = UNet(dims=dims, in_channels=1, out_channels=1, depth=4, base_channels=32)
    return save_package(folder / f"bench-{dims}d", unet_manifest(net.architecture_kwargs(), model_id=f"bench-{dims}d",
                                                                  name="bench", target="bench"), net.state_dict())


def network_flops(dims: int, tile: tuple[int, ...]) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from labelfree_app.models.unet import UNet, fuse_for_inference

    net = fuse_for_inference(UNet(dims=dims, depth=4, base_channels=32))
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        net(torch.zeros((1, 1, *tile)))
    return float(counter.get_total_flops())


def run_case(shape: list[int], package: str, backend: str) -> dict:
    """Inside the subprocess: predict a random image of ``shape`` and report."""
    import numpy as np

    os.environ["LABELFREE_BACKEND"] = backend
    from labelfree_app.core.engine import PredictionEngine
    from labelfree_app.core.tiling import TileGrid
    from labelfree_app.io import Image
    from labelfree_app.models.package import load_package

    engine = PredictionEngine(load_package(package), device="cpu")
    warm = np.random.default_rng(0).normal(size=(1, 1, *[min(s, 64) for s in shape[-2:]])).astype(np.float32)
    engine.predict(Image.from_array(warm if len(shape) == 2 else np.repeat(warm, 16, axis=1), "CZYX"))
    data = np.random.default_rng(1).normal(100, 10, size=shape).astype(np.float32)
    image = Image.from_array(data[None, None] if len(shape) == 2 else data[None], "CZYX")
    start = time.perf_counter()
    result = engine.predict(image)
    seconds = time.perf_counter() - start
    tile, halo, _ = engine._tile_settings(tuple(shape), engine_settings())
    grid = TileGrid.create(tuple(shape), tile, tuple(2 * h for h in halo), multiple_of=16, margin=halo)
    return {"shape": shape, "seconds": seconds, "peak_rss_mb": peak_rss_mb(), "tile": list(grid.tile_shape),
            "tiles": grid.n_tiles, "backend": engine._runner.backend, "finite": bool(np.isfinite(result.prediction).all())}


def engine_settings():
    from labelfree_app.core.engine import PredictSettings

    return PredictSettings()


def backend_ratios(tile: int = 512) -> dict:
    """One fnet-sized forward on a tile: eager, channels_last, bf16, torch.compile, ONNX Runtime."""
    import torch

    from labelfree_app.models.onnx_backend import OnnxModule
    from labelfree_app.models.unet import UNet, fuse_for_inference

    torch.manual_seed(0)
    net = fuse_for_inference(UNet(dims=2, depth=4, base_channels=32))
    x = torch.randn(1, 1, tile, tile)

    def timed(fn, repeats: int = 3) -> float:
        fn()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        return best

    out: dict[str, float] = {}
    with torch.inference_mode():
        out["eager_fp32"] = timed(lambda: net(x))
        cl = fuse_for_inference(UNet(dims=2, depth=4, base_channels=32)).to(memory_format=torch.channels_last)
        cl.load_state_dict(net.state_dict())
        xcl = x.contiguous(memory_format=torch.channels_last)
        out["channels_last"] = timed(lambda: cl(xcl))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out["bf16_autocast"] = timed(lambda: cl(xcl))
    try:
        compiled = torch.compile(net)
        with torch.inference_mode():
            out["torch_compile"] = timed(lambda: compiled(x))
    except Exception as exc:  # noqa: BLE001 - report, do not fail the benchmark
        out["torch_compile_error"] = str(exc)[:200]
    ort = OnnxModule(net, [x], ["input"], {"input": {0: "b", 2: "h", 3: "w"}})
    xn = x.numpy()
    out["onnxruntime"] = timed(lambda: ort(xn))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--large", action="store_true", help="also 8192×8192 (minutes)")
    parser.add_argument("--backend", default="auto", help="auto (ONNX Runtime on CPU) or torch")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--package", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case), args.package, args.backend)))
        return 0

    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rate = gemm_gflops()
    print(f"measured fp32 GEMM rate: {rate:.1f} GFLOP/s")
    cases = [[1024, 1024], [2048, 2048], [32, 512, 512]] + ([[8192, 8192]] if args.large else [])
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("LABELFREE_HOME", tmp)
        packages = {2: make_package(Path(tmp), 2), 3: make_package(Path(tmp), 3)}
        for shape in cases:
            dims = len(shape)
            proc = subprocess.run([sys.executable, __file__, "--case", json.dumps(shape), "--package",
                                   str(packages[dims]), "--backend", args.backend],
                                  capture_output=True, text=True, env=os.environ.copy())
            if proc.returncode != 0:
                print(f"{shape}: failed\n{proc.stderr[-2000:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            flops = network_flops(dims, tuple(r["tile"])) * r["tiles"]
            print(f"{'x'.join(map(str, shape)):>12}: {r['seconds']:7.2f} s  peak RSS {r['peak_rss_mb']:7.0f} MB  "
                  f"{r['tiles']} tile(s) of {r['tile']}  backend {r['backend']}  "
                  f"{flops / r['seconds'] / 1e9:6.1f} GFLOP/s ({100 * flops / r['seconds'] / 1e9 / rate:.0f}% of GEMM)")
    ratios = backend_ratios()
    base = ratios["eager_fp32"]
    print("one 512x512 forward, fnet-sized U-Net (best of 3):")
    for name, value in ratios.items():
        if isinstance(value, float):
            print(f"  {name:15s} {value:6.3f} s   {base / value:4.2f}x eager")
        else:
            print(f"  {name:15s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
