"""Seconds per training step on this machine, contiguous vs channels_last (what training uses on the CPU).

    python benchmarks/bench_train_step.py             # ISL-sized: 13 input channels, batch 8 of 128×128
    python benchmarks/bench_train_step.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def seconds_per_step(net, inputs, step, repeats: int) -> float:
    import torch

    optimizer = torch.optim.AdamW(net.parameters(), 1e-3)
    times = []
    for _ in range(repeats + 1):  # the first step warms up
        start = time.perf_counter()
        optimizer.zero_grad()
        step(net, *inputs).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channels", type=int, default=13)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import torch

    from labelfree_app.models.architectures import build_network

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.channels, args.size, args.size)
    y = torch.randn(args.batch, 1, args.size, args.size)
    t = torch.randint(0, 1000, (args.batch,))
    cases = {
        "U-Net (depth 4, base 16)": (
            lambda: build_network("fnet_unet", {"dims": 2, "in_channels": args.channels, "out_channels": 1,
                                                "depth": 4, "base_channels": 16}),
            lambda net, x, y: ((net(x) - y) ** 2).mean()),
        "denoiser (base 32, mults 1-2-2, patch 2)": (
            lambda: build_network("cond_denoiser_unet", {"dims": 2, "in_channels": args.channels, "out_channels": 1,
                                                         "base_channels": 32, "channel_mults": [1, 2, 2],
                                                         "attention_levels": [], "patch_size": 2}),
            lambda net, x, y: ((net(y, t, x) - y) ** 2).mean()),
    }
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch} × {args.channels} ch × {args.size}²")
    for name, (make, step) in cases.items():
        plain = seconds_per_step(make(), (x, y), step, args.repeats)
        fmt = torch.channels_last
        fast = seconds_per_step(make().to(memory_format=fmt), (x.contiguous(memory_format=fmt),
                                                                y.contiguous(memory_format=fmt)), step, args.repeats)
        print(f"{name}: contiguous {plain:.3f} s/step, channels_last {fast:.3f} s/step ({plain / fast:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
