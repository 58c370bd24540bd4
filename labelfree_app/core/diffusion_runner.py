"""Whole-image diffusion sampling with tiles, streaming mean and variance over samples.

At every denoising step the network runs on overlapping tiles of the current whole image and
the tile outputs are blended, so a large image is sampled as one consistent image in bounded
memory. Several samples travel together through each tile batch. On the CPU the denoiser runs
in ONNX Runtime (about 2x faster than eager PyTorch, measured in benchmarks/bench_diffusion.py);
for residual models the U-Net mean mu depends on the condition only, so it is computed once per
tile and reused at every step and by every sample.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import torch

from labelfree_app.core.events import Event, Preview, Progress
from labelfree_app.core.settings import CPU_GROUP  # 8: 2.4 vs 3.8 s/Mpx for 2 samples per call
from labelfree_app.core.tiling import predict_tiled
from labelfree_app.core.welford import Welford
from labelfree_app.models.diffusion.samplers import make_sampler
from labelfree_app.models.diffusion.samplers import sample as run_sampler
from labelfree_app.models.diffusion.schedule import NoiseSchedule
from labelfree_app.models.diffusion.variance_scale import variance_scale
from labelfree_app.models.manifest import DiffusionSettings as ManifestDiffusion
from labelfree_app.models.onnx_backend import onnx_wanted

ONNX_CALL_PIXELS = 2 * 576 * 576  # 8 samples of a 576² tile in one call: 2.4 GB peak; 2 per call: 0.9 GB
SampleRun = Generator[Event, None, "tuple[np.ndarray, np.ndarray, np.ndarray | None]"]
Denoise = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class DiffusionRunner:
    """A loaded conditional denoiser plus its noise schedule."""

    def __init__(self, package: Any, manifest: dict[str, Any], device: Any) -> None:
        diff = manifest.get("diffusion") or {}
        default = ManifestDiffusion()  # a manifest that leaves a key out means the manifest's default
        self.device = torch.device(str(device))
        self.network = package.build_network(self.device)
        self.schedule = NoiseSchedule.create(diff.get("schedule", default.schedule),
                                             int(diff.get("train_steps", default.train_steps)))
        self.prediction: str = diff.get("prediction", default.prediction)
        self.out_channels = int(manifest["output"]["channels"])
        self.required_multiple = int(getattr(self.network, "required_multiple", 1))
        self.residual = hasattr(self.network, "mean_net") and hasattr(self.network, "denoise")
        self._manifest = manifest
        self._use_onnx = onnx_wanted(self.device)
        self._onnx: Any = None
        self.mean_calls = 0  # tiles whose mu was computed (residual models)

    @property
    def backend(self) -> str:
        """"onnxruntime" when ONNX Runtime runs the denoiser (CPU), else "torch"."""
        return "onnxruntime" if self._use_onnx else "torch"

    def max_group(self, samples: int) -> int:
        """How many samples travel together through each tile batch.

        On CPU up to ``CPU_GROUP``; on a GPU as many as free memory allows. ``LABELFREE_DIFFUSION_GROUP`` overrides (benchmarks).
        """
        override = os.environ.get("LABELFREE_DIFFUSION_GROUP")
        if override:
            return max(1, min(samples, int(override)))
        if self.device.type != "cuda":
            return min(samples, CPU_GROUP)
        from labelfree_app.core.devices import free_memory_bytes

        free = free_memory_bytes(self.device) or 0
        return max(1, min(samples, int(free // (2 * 1024**3)) or 1))

    def sample_image(
        self,
        cond: np.ndarray,
        *,
        samples: int,
        steps: int,
        sampler: str,
        eta: float,
        seed: int,
        tile_shape: tuple[int, ...],
        halo: tuple[int, ...],
        batch_size: int,
        n_frames: int,
        preview_interval_s: float,
        to_output_units: Callable[[np.ndarray], np.ndarray],
    ) -> SampleRun:
        """Draw ``samples`` samples conditioned on ``cond`` (C_in, *spatial).

        Yields progress and throttled previews; returns (mean, variance, frames) in normalized
        units, frames being (F, C, Z, Y, X) in output units or None. The variance is the samples'
        times the square of the manifest's fitted ``variance_scale`` where it was fitted for these
        steps, sampler and eta (``models/diffusion/variance_scale.py``), else the samples' own.
        """
        spatial = cond.shape[1:]
        stats = Welford()
        generator = torch.Generator().manual_seed(int(seed))
        stepper = make_sampler(sampler, self.schedule, steps=steps, prediction=self.prediction, eta=eta)
        group = self.max_group(samples)
        n_groups = -(-samples // group)
        frame_steps = _frame_steps(steps, n_frames)
        frames: list[np.ndarray] = []
        mean_cache: list[tuple[np.ndarray, torch.Tensor]] = []
        last_preview = 0.0
        done_samples = 0
        try:
            for g in range(n_groups):
                size = min(group, samples - done_samples)
                model_fn = self._tiled_model_fn(cond, size, tile_shape, halo, batch_size, mean_cache)
                final: torch.Tensor | None = None
                label = f"samples {done_samples + 1}-{done_samples + size} of {samples}"
                for record in run_sampler(stepper, model_fn, self.schedule, (size, self.out_channels, *spatial),
                                          steps=steps, prediction=self.prediction, generator=generator):
                    final = record.x_t
                    yield Progress("sampling", g * steps + record.index + 1, n_groups * steps, label)
                    if g == 0 and record.index in frame_steps:
                        frames.append(to_output_units(_first(record.x_t)))
                    now = time.perf_counter()
                    if now - last_preview >= preview_interval_s or record.is_last:
                        last_preview = now
                        yield Preview("x_t", done_samples, record.index, record.total,
                                      to_output_units(_first(record.x_t)))
                        yield Preview("pred_x0", done_samples, record.index, record.total,
                                      to_output_units(_first(record.pred_x0)))
                assert final is not None
                stats.update_batch(final.detach().cpu().numpy().astype(np.float32))
                done_samples += size
                del final
            frames_arr = np.stack(frames) if frames else None
            variance = stats.variance.astype(np.float32)
            scale = variance_scale(self._manifest.get("diffusion"), steps=steps, sampler=sampler, eta=eta)
            if scale is not None:  # few steps spread less: the fitted factor keeps the reference calibration
                variance *= np.float32(scale * scale)
            return stats.mean.astype(np.float32), variance, frames_arr
        finally:
            frames.clear()
            mean_cache.clear()

    # -- the network on tiles ---------------------------------------------------------------
    def _denoiser(self) -> Denoise:
        """``(x_t, t, cond) -> output`` of the conditional denoiser (the residual's inner one)."""
        inner = self.network.denoiser if self.residual else self.network
        if not self._use_onnx:
            return inner  # type: ignore[no-any-return]
        if self._onnx is None:
            self._onnx = _export_denoiser(inner, self._manifest, self.residual)
        session = self._onnx

        def run(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
            out = session(x_t.numpy(), t.to(torch.float32).numpy(), cond.numpy())
            return torch.from_numpy(np.asarray(out, dtype=np.float32))

        return run

    def _samples_per_call(self, tile: tuple[int, ...]) -> int:
        """Samples per network call: ONNX Runtime's peak memory grows with the batch (about 240 MB
        per 576² sample, measured) while its time per pixel does not, so it gets small batches."""
        if not self._use_onnx:
            return 1 << 30
        return max(1, ONNX_CALL_PIXELS // int(np.prod(tile)))

    def _mean(self, cond_tiles: np.ndarray, cache: list[tuple[np.ndarray, torch.Tensor]], call: int) -> torch.Tensor:
        """mu for a batch of condition tiles, from ``cache`` when this call saw the same tiles before.

        The tiler visits the same tiles in the same order at every step, so the ``call``-th batch of
        a step is looked up by position and checked against the stored condition pixels."""
        if call < len(cache) and np.array_equal(cache[call][0], cond_tiles):
            return cache[call][1]
        with torch.inference_mode():
            mu = self.network.mean(torch.from_numpy(cond_tiles).to(self.device)).float()
        self.mean_calls += cond_tiles.shape[0]
        entry = (cond_tiles.copy(), mu)
        if call < len(cache):
            cache[call] = entry
        else:
            cache.append(entry)
        return mu

    def _tiled_model_fn(
        self, cond: np.ndarray, group: int, tile_shape: tuple[int, ...], halo: tuple[int, ...], batch_size: int,
        mean_cache: list[tuple[np.ndarray, torch.Tensor]],
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        c_out = self.out_channels
        device = self.device
        denoise = self._denoiser()

        margin = edge_margin(cond.shape[1:], tile_shape, halo)

        def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            t_value = float(t.reshape(-1)[0])
            spatial = x_t.shape[2:]
            stacked = np.concatenate(
                [x_t.detach().cpu().numpy().astype(np.float32).reshape(group * c_out, *spatial), cond], axis=0
            )
            calls = 0

            def predict(tiles: np.ndarray) -> np.ndarray:
                nonlocal calls
                b = tiles.shape[0]
                tile = tiles.shape[2:]
                xt = torch.from_numpy(np.ascontiguousarray(tiles[:, : group * c_out])).reshape(b * group, c_out, *tile)
                cond_tiles = np.ascontiguousarray(tiles[:, group * c_out:])
                mu = self._mean(cond_tiles, mean_cache, calls) if self.residual else None
                calls += 1
                out = np.empty((b * group, c_out, *tile), dtype=np.float32)
                per_call = self._samples_per_call(tile)
                for start in range(0, b * group, per_call):
                    which = np.arange(start, min(start + per_call, b * group))
                    x_part = xt[start:start + len(which)].to(device)
                    cnd = torch.from_numpy(cond_tiles[which // group]).to(device)
                    tt = torch.full((len(which),), t_value, dtype=torch.float32, device=device)
                    with torch.inference_mode():
                        if mu is not None:
                            y = self.network.denoise(x_part, tt, cnd, mu[torch.from_numpy(which // group)],
                                                     denoiser=denoise)
                        else:
                            y = denoise(x_part, tt, cnd)
                    out[start:start + len(which)] = y.float().cpu().numpy()
                return out.reshape(b, group * c_out, *tile)

            y = predict_tiled(stacked, predict, tile_shape=tile_shape, overlap=tuple(2 * h for h in halo),
                              margin=margin, multiple_of=self.required_multiple, batch_size=batch_size)
            return torch.from_numpy(y).reshape(group, c_out, *spatial).to(x_t.dtype)

        return model_fn


def edge_margin(spatial: tuple[int, ...], tile_shape: tuple[int, ...], halo: tuple[int, ...]) -> tuple[int, ...]:
    """The reflected context around the image's edges: ``halo``, or none when the image fits one tile.

    One tile has no seams to blend, and the reflected rim only added work (a 512² image sampled as a
    576² tile: 27 % more network work; a 256² one as 320²: 56 %). Without it, on 10 held-out crops ×
    2 seeds (``benchmarks/bench_diffusion_edges.py``): r +0.006 ± 0.004, Spearman(std, error)
    +0.013 ± 0.011, within-1σ −0.010 ± 0.003 (the samples spread a little less at the edges)."""
    if all(n + 2 * h <= t for n, h, t in zip(spatial, halo, tile_shape)):
        return tuple(0 for _ in halo)
    return tuple(halo)


def _export_denoiser(network: torch.nn.Module, manifest: dict[str, Any], residual: bool) -> Any:
    """The conditional denoiser in ONNX Runtime, exported once and cached by the weights' sha256."""
    from labelfree_app.core.threads import cpu_threads
    from labelfree_app.models.onnx_backend import OnnxModule, cache_path

    arch = manifest.get("architecture") or {}
    sha = (manifest.get("weights") or {}).get("sha256")
    cache = None
    if sha:
        cache = cache_path(sha, str(arch.get("id")), dict(arch.get("kwargs") or {}),
                           extra="residual-denoiser" if residual else "denoiser")
    dims = int(network.dims)
    size = (int(network.required_multiple) * 2,) * dims
    example = (torch.zeros((1, int(network.out_channels), *size)), torch.zeros(1),
               torch.zeros((1, int(network.in_channels), *size)))
    spatial = {2 + d: f"s{d}" for d in range(dims)}
    axes = {"x_t": {0: "batch", **spatial}, "t": {0: "batch"}, "cond": {0: "batch", **spatial}}
    return OnnxModule(network, example, ["x_t", "t", "cond"], axes, cache_path=cache, threads=cpu_threads())


def _first(batch: torch.Tensor) -> np.ndarray:
    """Sample 0 of a (N, C, *spatial) batch as a numpy copy."""
    return batch[0].detach().cpu().numpy().astype(np.float32, copy=True)


def _frame_steps(steps: int, n_frames: int) -> set[int]:
    if n_frames <= 0:
        return set()
    return {int(round(v)) for v in np.linspace(0, steps - 1, min(n_frames, steps))}
