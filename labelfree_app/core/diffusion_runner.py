"""Whole-image diffusion sampling with tiles, streaming mean and variance over samples.

At every denoising step the network runs on overlapping tiles of the current whole image and
the tile outputs are blended, so a large image is sampled as one consistent image in bounded
memory. Several samples travel together through each tile batch.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Generator

import numpy as np
import torch

from labelfree_app.core.events import Event, Preview, Progress
from labelfree_app.core.tiling import predict_tiled
from labelfree_app.core.welford import Welford
from labelfree_app.models.diffusion.samplers import sample as run_sampler
from labelfree_app.models.diffusion.schedule import NoiseSchedule
from labelfree_app.models.manifest import DiffusionSettings as ManifestDiffusion

CPU_GROUP = 8  # with the allocator tuned, 8 samples per call cost least per pixel (2.4 vs 3.8 s/Mpx for 2)
SampleRun = Generator[Event, None, "tuple[np.ndarray, np.ndarray, np.ndarray | None]"]


class DiffusionRunner:
    """A loaded conditional denoiser plus its noise schedule."""

    def __init__(self, package: Any, manifest: dict[str, Any], device: torch.device) -> None:
        diff = manifest.get("diffusion") or {}
        default = ManifestDiffusion()  # a manifest that leaves a key out means the manifest's default
        self.device = device
        self.network = package.build_network(device)
        self.schedule = NoiseSchedule.create(diff.get("schedule", default.schedule),
                                             int(diff.get("train_steps", default.train_steps)))
        self.prediction: str = diff.get("prediction", default.prediction)
        self.out_channels = int(manifest["output"]["channels"])
        self.required_multiple = int(getattr(self.network, "required_multiple", 1))

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
        units, frames being (F, C, Z, Y, X) in output units or None.
        """
        spatial = cond.shape[1:]
        stats = Welford()
        generator = torch.Generator().manual_seed(int(seed))
        group = self.max_group(samples)
        n_groups = -(-samples // group)
        frame_steps = _frame_steps(steps, n_frames)
        frames: list[np.ndarray] = []
        last_preview = 0.0
        done_samples = 0
        try:
            for g in range(n_groups):
                size = min(group, samples - done_samples)
                model_fn = self._tiled_model_fn(cond, size, tile_shape, halo, batch_size)
                shape = (size, self.out_channels, *spatial)
                records = run_sampler(
                    sampler, model_fn, self.schedule, shape, steps=steps, prediction=self.prediction,
                    generator=generator, eta=eta,
                )
                final: torch.Tensor | None = None
                try:
                    for record in records:
                        final = record.x_t
                        yield Progress("sampling", g * steps + record.index + 1, n_groups * steps,
                                       f"samples {done_samples + 1}-{done_samples + size} of {samples}")
                        if g == 0 and record.index in frame_steps:
                            frames.append(to_output_units(_first(record.x_t)))
                        now = time.perf_counter()
                        if now - last_preview >= preview_interval_s or record.index == record.total - 1:
                            last_preview = now
                            yield Preview("x_t", done_samples, record.index, record.total,
                                          to_output_units(_first(record.x_t)))
                            yield Preview("pred_x0", done_samples, record.index, record.total,
                                          to_output_units(_first(record.pred_x0)))
                finally:
                    records.close()
                assert final is not None
                stats.update_batch(final.detach().cpu().numpy().astype(np.float32))
                done_samples += size
                del final
            frames_arr = np.stack(frames) if frames else None
            return stats.mean.astype(np.float32), stats.variance.astype(np.float32), frames_arr
        finally:
            frames.clear()

    def _tiled_model_fn(
        self, cond: np.ndarray, group: int, tile_shape: tuple[int, ...], halo: tuple[int, ...], batch_size: int
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        c_out = self.out_channels
        network, device = self.network, self.device

        def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            t_value = float(t.reshape(-1)[0])
            spatial = x_t.shape[2:]
            stacked = np.concatenate(
                [x_t.detach().cpu().numpy().astype(np.float32).reshape(group * c_out, *spatial), cond], axis=0
            )

            def predict(tiles: np.ndarray) -> np.ndarray:
                b = tiles.shape[0]
                tile = tiles.shape[2:]
                xt = torch.from_numpy(np.ascontiguousarray(tiles[:, : group * c_out])).reshape(b * group, c_out, *tile)
                cnd = torch.from_numpy(np.repeat(tiles[:, group * c_out:], group, axis=0))
                tt = torch.full((b * group,), t_value, dtype=torch.float32)
                with torch.inference_mode():
                    out = network(xt.to(device), tt.to(device), cnd.to(device))
                return out.float().cpu().numpy().reshape(b, group * c_out, *tile)

            y = predict_tiled(stacked, predict, tile_shape=tile_shape, overlap=tuple(2 * h for h in halo),
                              margin=halo, multiple_of=self.required_multiple, batch_size=batch_size)
            return torch.from_numpy(y).reshape(group, c_out, *spatial).to(x_t.dtype)

        return model_fn


def _first(batch: torch.Tensor) -> np.ndarray:
    """Sample 0 of a (N, C, *spatial) batch as a numpy copy."""
    return batch[0].detach().cpu().numpy().astype(np.float32, copy=True)


def _frame_steps(steps: int, n_frames: int) -> set[int]:
    if n_frames <= 0:
        return set()
    return {int(round(v)) for v in np.linspace(0, steps - 1, min(n_frames, steps))}
