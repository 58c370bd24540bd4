"""How close the fnet-sized U-Net comes to the machine's fp32 limit (issue 16, item 3).

    python benchmarks/bench_unet_gflops.py                # 2D 1024² and 3D 32×512², the app's backends
    python benchmarks/bench_unet_gflops.py --reps 7 --reps-3d 2
    python benchmarks/bench_unet_gflops.py --variants     # also ONNX Runtime option / tile variants (2D)
    python benchmarks/bench_unet_gflops.py --skip-3d
    python benchmarks/bench_unet_gflops.py --ab spinning=false --reps 15   # paired A/B of one option

The network's FLOPs are counted analytically (``unet_flops``: 2·Cin·Cout·k^d per output voxel for a
conv, per input voxel for a transposed conv; bias, ReLU and concatenation not counted) and checked
against ``torch.utils.flop_counter.FlopCounterMode`` on the meta device. Every forward pass is timed
between two rounds of plain fp32 GEMMs (``torch.matmul`` of square matrices, and ONNX Runtime's
MatMul, same thread count) and its rate is divided by the mean of those two: a paired ratio, so a machine whose speed drifts (shared cores, other
jobs) still gives a meaningful "% of GEMM". Medians over the repetitions are printed.

The network is fnet-sized (depth 4, base 32, 1 input and 1 output channel, 3×3 head) with random
weights and batch-norm folded as the app does; speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

FNET = {"in_channels": 1, "out_channels": 1, "depth": 4, "base_channels": 32, "out_kernel_size": 3}


def unet_flops(
    dims: int,
    spatial: tuple[int, ...],
    in_channels: int = 1,
    out_channels: int = 1,
    depth: int = 4,
    base_channels: int = 32,
    out_kernel_size: int = 3,
    batch: int = 1,
) -> int:
    """Multiply-adds ×2 of one forward pass of ``labelfree_app.models.unet.UNet`` (no bias/ReLU/cat)."""
    voxels = [int(np.prod(spatial)) // (2**dims) ** level for level in range(depth + 1)]
    widths = [base_channels * 2**level for level in range(depth + 1)]
    k3, k2, kh = 3**dims, 2**dims, out_kernel_size**dims

    def conv(cin: int, cout: int, k: int, out_voxels: int) -> int:
        return 2 * cin * cout * k * out_voxels

    total = 0
    for level in range(depth + 1):  # encoders: conv(cin→w), conv(w→w) at this level's resolution
        cin = in_channels if level == 0 else widths[level - 1]
        total += conv(cin, widths[level], k3, voxels[level]) + conv(widths[level], widths[level], k3, voxels[level])
    for level in range(depth):
        w = widths[level]
        total += conv(w, w, k2, voxels[level + 1])  # down: stride-2 kernel-2 conv, output at level+1
        # up: transposed conv widths[level+1] → w, kernel 2 stride 2: per *input* voxel (level+1)
        total += conv(widths[level + 1], w, k2, voxels[level + 1])
        total += conv(2 * w, w, k3, voxels[level]) + conv(w, w, k3, voxels[level])  # decoder
    total += conv(widths[0], out_channels, kh, voxels[0])  # head
    return batch * total


def flop_counter_flops(dims: int, spatial: tuple[int, ...], batch: int = 1, **kwargs: int) -> int:
    """The same count from PyTorch's FlopCounterMode (on the meta device: nothing is computed)."""
    from torch.utils.flop_counter import FlopCounterMode

    from labelfree_app.models.unet import UNet

    with torch.device("meta"):
        net = UNet(dims=dims, **kwargs).eval()
        x = torch.empty((batch, kwargs.get("in_channels", 1), *spatial))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x)
    return int(counter.get_total_flops())


# --------------------------------------------------------------------------- the ceiling


class Gemm:
    """Plain fp32 GEMMs of square n×n matrices, each timed for at least ``min_s`` seconds:
    ``torch.matmul`` (MKL in this torch build) and ONNX Runtime's MatMul (MLAS, the library its
    convolutions use). On AMD CPUs MKL takes a slower path than MLAS, so "% of GEMM" is given
    against both, and the higher of the two is the machine's ceiling."""

    def __init__(self, n: int = 2048, min_s: float = 0.4) -> None:
        import onnxruntime as rt
        from onnx import TensorProto, helper

        self.n, self.min_s = n, min_s
        self.a, self.b = torch.randn(n, n), torch.randn(n, n)
        self.out = torch.empty(n, n)
        spec = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n]) for name in "abc"]
        graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm", spec[:2], spec[2:])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        options = rt.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = rt.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feeds = {"a": self.a.numpy(), "b": self.b.numpy()}
        self.kernels = {"torch": lambda: torch.matmul(self.a, self.b, out=self.out),
                        "mlas": lambda: session.run(None, feeds)}
        for kernel in self.kernels.values():
            kernel()
            kernel()

    def gflops(self) -> dict[str, float]:
        rates = {}
        for name, kernel in self.kernels.items():
            count, start = 0, time.perf_counter()
            while True:
                kernel()
                count += 1
                elapsed = time.perf_counter() - start
                if elapsed >= self.min_s:
                    rates[name] = 2 * self.n**3 * count / elapsed / 1e9
                    break
        return rates


# --------------------------------------------------------------------------- the backends


def build_network(dims: int) -> torch.nn.Module:
    from labelfree_app.models.unet import UNet, fuse_for_inference

    torch.manual_seed(0)
    return fuse_for_inference(UNet(dims=dims, **FNET))


def eager(dims: int, channels_last: bool) -> Callable[[np.ndarray], Any]:
    """Eager torch fp32 as UNetPredictor runs it (folded batch-norm; channels_last optional)."""
    fmt = (torch.channels_last if dims == 2 else torch.channels_last_3d) if channels_last else torch.contiguous_format
    net = build_network(dims).to(memory_format=fmt)

    def run(x: np.ndarray) -> Any:
        with torch.inference_mode():
            return net(torch.from_numpy(x).contiguous(memory_format=fmt)).contiguous().numpy()

    return run


def ort(dims: int, threads: int | None = None, **session: Any) -> Callable[[np.ndarray], Any]:
    """ONNX Runtime through the app's OnnxModule (its session options), exported as UNetPredictor
    exports; ``session`` overrides options for the variants (see ``onnx_backend.session_options``)."""
    from labelfree_app.models.onnx_backend import OnnxModule

    net = build_network(dims)
    example = torch.zeros((1, 1, *(32,) * dims))
    axes = {0: "batch", **{2 + d: f"s{d}" for d in range(dims)}}
    module = OnnxModule(net, [example], ["input"], {"input": axes}, threads=threads, session=session)
    return module


# --------------------------------------------------------------------------- timing


def measure(
    cases: list[tuple[str, Callable[[np.ndarray], Any], tuple[int, ...], int]],
    dims: int,
    reps: int,
    gemm: Gemm,
) -> list[dict[str, Any]]:
    """Run every case ``reps`` times, interleaved case by case, each pass between two GEMMs."""
    rows = []
    for name, fn, spatial, batch in cases:
        x = np.random.default_rng(0).standard_normal((batch, 1, *spatial)).astype(np.float32)
        fn(x)  # warm-up (ORT plans, oneDNN primitives)
        rows.append({"backend": name, "fn": fn, "x": x, "spatial": spatial, "batch": batch,
                     "flops": unet_flops(dims, spatial, batch=batch, **FNET), "ms": [], "gf": [],
                     "torch": [], "best": []})
    ceilings: dict[str, list[float]] = {"torch": [], "mlas": []}
    g_before = gemm.gflops()
    for _ in range(reps):
        for row in rows:
            start = time.perf_counter()
            row["fn"](row["x"])
            seconds = time.perf_counter() - start
            g_after = gemm.gflops()
            ceiling = {name: (g_before[name] + g_after[name]) / 2 for name in g_after}
            for name, value in ceiling.items():
                ceilings[name].append(value)
            gf = row["flops"] / seconds / 1e9
            row["ms"].append(seconds * 1e3)
            row["gf"].append(gf)
            row["torch"].append(gf / ceiling["torch"])
            row["best"].append(gf / max(ceiling.values()))
            g_before = g_after
    print("GEMM ceilings (median over the run): " + ", ".join(
        f"{name} {statistics.median(values):.1f} GFLOP/s" for name, values in ceilings.items()))
    for row in rows:
        for key in ("fn", "x"):
            row.pop(key)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'backend':<34} {'shape':<16} {'GFLOP':>7} {'ms/pass':>9} {'GFLOP/s':>8} "
          f"{'% torch GEMM':>13} {'% best GEMM':>12}  (best: min–max %)")
    for row in rows:
        shape = "×".join(map(str, row["spatial"])) + (f" b{row['batch']}" if row["batch"] > 1 else "")
        best = [100 * r for r in row["best"]]
        print(f"{row['backend']:<34} {shape:<16} {row['flops'] / 1e9:7.1f} {statistics.median(row['ms']):9.0f} "
              f"{statistics.median(row['gf']):8.1f} {100 * statistics.median(row['torch']):12.1f}% "
              f"{statistics.median(best):11.1f}%  ({min(best):.0f}–{max(best):.0f})")


def ab(variant: dict[str, Any], dims: int, spatial: tuple[int, ...], pairs: int) -> None:
    """ONNX Runtime with the app's settings (A) against a variant (B), alternated A B A B ...; the
    median of the per-pair time ratios B/A (below 1: the variant is faster)."""
    threads = variant.pop("threads", None)
    a, b = ort(dims), ort(dims, threads=threads, **variant)
    x = np.random.default_rng(0).standard_normal((1, 1, *spatial)).astype(np.float32)
    a(x), b(x)
    ratios, times_a, times_b = [], [], []
    for _ in range(pairs):
        seconds = []
        for fn in (a, b):
            start = time.perf_counter()
            fn(x)
            seconds.append(time.perf_counter() - start)
        times_a.append(seconds[0])
        times_b.append(seconds[1])
        ratios.append(seconds[1] / seconds[0])
    print(f"A/B {dims}D {'×'.join(map(str, spatial))}: app settings {statistics.median(times_a) * 1e3:.0f} ms, "
          f"variant {dict(variant, threads=threads)} {statistics.median(times_b) * 1e3:.0f} ms; "
          f"median ratio B/A {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}, "
          f"{pairs} pairs)")


def _value(text: str) -> Any:
    return {"true": True, "false": False}.get(text.lower(), int(text) if text.isdigit() else text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions per 2D case (median reported)")
    parser.add_argument("--reps-3d", type=int, default=2, help="repetitions per 3D case (a pass takes ~1 min)")
    parser.add_argument("--skip-2d", action="store_true")
    parser.add_argument("--skip-3d", action="store_true")
    parser.add_argument("--skip-eager", action="store_true", help="ONNX Runtime only")
    parser.add_argument("--variants", action="store_true", help="also ONNX Runtime option/tile variants in 2D")
    parser.add_argument("--gemm-n", type=int, default=2048)
    parser.add_argument("--ab", nargs="+", metavar="KEY=VALUE",
                        help="only an A/B of app settings vs a variant (threads=1, spinning=false, arena=false, "
                             "parallel=true) in 2D 1024², --reps pairs")
    args = parser.parse_args()
    if args.ab:
        ab({k: _value(v) for k, v in (item.split("=", 1) for item in args.ab)}, 2, (1024, 1024), args.reps)
        return

    import onnxruntime

    threads = torch.get_num_threads()
    for dims, spatial in ((2, (1024, 1024)), (3, (32, 512, 512))):
        analytic = unet_flops(dims, spatial, **FNET)
        counted = flop_counter_flops(dims, spatial, **FNET)
        assert analytic == counted, (dims, analytic, counted)
        print(f"{dims}D {spatial}: {analytic / 1e9:.1f} GFLOP per pass (analytic = FlopCounterMode)")
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {threads} threads; "
          f"ceilings: torch.matmul and ONNX Runtime MatMul, {args.gemm_n}² fp32, timed around every pass")

    gemm = Gemm(args.gemm_n)
    cases2: list[tuple[str, Callable[[np.ndarray], Any], tuple[int, ...], int]] = [
        ("onnxruntime (app settings)", ort(2), (1024, 1024), 1)] if not args.skip_2d else []
    if not args.skip_eager and not args.skip_2d:
        cases2 += [("torch eager fp32", eager(2, False), (1024, 1024), 1),
                   ("torch eager fp32 channels_last", eager(2, True), (1024, 1024), 1)]
    if args.variants and not args.skip_2d:
        import onnxruntime as rt

        cases2 += [
            ("ort tile 512² batch 4", ort(2), (512, 512), 4),
            ("ort tile 256² batch 16", ort(2), (256, 256), 16),
            ("ort 1 intra-op thread", ort(2, threads=1), (1024, 1024), 1),
            ("ort no spinning", ort(2, spinning=False), (1024, 1024), 1),
            ("ort no memory arena", ort(2, arena=False), (1024, 1024), 1),
            ("ort parallel mode, 2 inter-op", ort(2, parallel=True), (1024, 1024), 1),
            ("ort graph opt EXTENDED", ort(2, level=rt.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
             (1024, 1024), 1),
            ("ort graph opt BASIC", ort(2, level=rt.GraphOptimizationLevel.ORT_ENABLE_BASIC), (1024, 1024), 1),
        ]
    if not args.skip_2d:
        print("\n2D 1024², median of", args.reps)
        print_table(measure(cases2, 2, args.reps, gemm))

    if not args.skip_3d:
        cases3: list[tuple[str, Callable[[np.ndarray], Any], tuple[int, ...], int]] = [
            ("onnxruntime (app settings)", ort(3), (32, 512, 512), 1)]
        if not args.skip_eager:  # eager contiguous 3D falls back to an im2col conv: > 30 GB at this size
            cases3 += [("torch eager fp32 channels_last_3d", eager(3, True), (32, 512, 512), 1)]
        print("\n3D 32×512², median of", args.reps_3d)
        print_table(measure(cases3, 3, args.reps_3d, gemm))
    print("\nNote: % of GEMM is each pass's rate over the mean of the GEMMs just before and after it "
          "(best: the faster of torch.matmul and ONNX Runtime MatMul in that pair).")


if __name__ == "__main__":
    main()
