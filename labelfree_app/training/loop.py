"""The training loop for both families, as a generator of events.

``run_training(config)`` yields ``TrainEvent`` values and returns the package path;
``train(config, progress=...)`` runs it to the end. Control from a GUI worker thread:

* stop and keep the best: make ``should_stop()`` return True; the loop checkpoints, writes the
  package from the best validated weights and finishes with ``stop_reason == "stopped"``;
* pause: ``close()`` the generator; the current step is checkpointed (no package is written);
  resume later with ``config.resume=True``, which continues at the same step, with the same
  optimizer, RNG and sampler state, appending to the same ``log.csv``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generator

import numpy as np
import torch

from labelfree_app.core.drive import drive
from labelfree_app.errors import TrainingDataError
from labelfree_app.training import checkpoint as ckpt
from labelfree_app.training.config import TrainConfig
from labelfree_app.training.datasets import LoadedPair, check_consistent, check_pairs_exist, load_pair
from labelfree_app.training.events import (CheckpointSaved, LoadingData, StepDone, TrainEvent, TrainFinished,
                                           TrainStarted, ValidationDone)
from labelfree_app.training.finetune import Parent, finetune_config, initial_weights, parent_for
from labelfree_app.training.input_profile import InputSample
from labelfree_app.training.log import append_log, truncate_log
from labelfree_app.training.model_card import TrainingRecord, build_manifest
from labelfree_app.training.objectives import Objective, build, make_objective
from labelfree_app.training.optim import EMA, build_optimizer, lr_at, set_lr
from labelfree_app.training.sampling import PatchSampler, Region
from labelfree_app.training.stain_units import target_units
from labelfree_app.training.validation import ValItem, run_validation, validation_items

LOG_EVERY = 10  # steps per train_loss row of log.csv
TrainRun = Generator[TrainEvent, None, Path]


def train(config: TrainConfig, progress: Callable[[TrainEvent], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> Path:
    """Train to the end (steps, time budget or ``should_stop``); returns the package folder."""
    return drive(run_training(config, should_stop=should_stop), progress)


@dataclass
class _Run:
    """Mutable state of one run (what a checkpoint saves)."""

    step: int = 0
    seconds_before: float = 0.0
    best: dict[str, Any] | None = None
    loss_sum: float = 0.0
    loss_count: int = 0
    last_checkpoint: int = -1
    last_validation: int = -1
    last: dict[str, Any] | None = None  # the latest validation result


def run_training(config: TrainConfig, *, should_stop: Callable[[], bool] | None = None) -> TrainRun:
    """Generator of training events; its return value is the package path."""
    from labelfree_app.core.allocator import tune_cpu_allocator
    from labelfree_app.core.devices import select_device

    tune_cpu_allocator()
    parent = parent_for(config)
    if parent is not None:
        config = finetune_config(config, parent)
    objective = make_objective(config.model_type, config.dims, config.unet, config.diffusion,
                               config.input_normalization)
    config.check()
    work = config.resolved_work_dir
    _refuse_to_clobber(config, work)
    check_pairs_exist(config.pairs)
    if config.val_pairs:
        check_pairs_exist(config.val_pairs)
    region = Region.parse(config.val_region) if config.val_region else None
    max_val = config.diffusion.val_max_shape if config.model_type == "diffusion" else None
    seen = InputSample(len(config.pairs), config.dims)  # the inputs' profile: trust maps of predictions
    train_loaded, summaries, val_items = yield from _load_all(config, region, max_val, seen)
    trust = seen.trust_block()
    val_loaded = [_load(config, spec) for spec in config.val_pairs]
    in_channels, z_as_channels = check_consistent([*summaries, *val_loaded])
    val_items += validation_items([], None, val_loaded, max_shape=max_val)
    del val_loaded

    device = select_device(config.device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    noise_gen = torch.Generator().manual_seed(config.seed + 1)
    memory_format = _memory_format(config, device)
    network = build(objective, in_channels)
    if parent is not None:
        network.load_state_dict(initial_weights(parent, network, z_as_channels=z_as_channels), strict=True)
    network = network.to(device, memory_format=memory_format)
    network.train()
    optimizer = build_optimizer(network, config.resolved_lr, config.weight_decay)
    ema_decay = config.diffusion.ema_decay if config.model_type == "diffusion" else config.unet.ema_decay
    ema = EMA(network, ema_decay) if ema_decay > 0 else None
    amp_dtype = _amp_dtype(config, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    def load_index(index: int) -> LoadedPair:
        # Hand each pre-read pair over to the sampler once, so a swapped-out image can be freed.
        return train_loaded.pop(index) if index in train_loaded else _load(config, config.pairs[index])

    sampler = PatchSampler(load_index, len(config.pairs), config.patch_shape, exclude=region,
                           foreground_weight=config.foreground_weight, buffer_size=config.buffer_size,
                           switch_every=config.buffer_switch_every, augment=config.augment,
                           intensity_jitter=config.intensity_jitter, augmentation=config.augmentation,
                           weights=[spec.weight for spec in config.pairs], rng=rng)
    for index in sampler.buffer:
        sampler.entry(index)  # corner tables now: a patch that cannot fit fails before training

    _prepare_work_dir(config, work)
    state = _Run()
    log_path = work / "log.csv"
    if config.resume:
        found = ckpt.load_latest_checkpoint(work / "checkpoints")
        if found is not None:
            try:
                _restore(found, config, state, network, optimizer, ema, scaler, sampler, rng, noise_gen, device)
                ckpt.check_optimizer_state(optimizer, found.path)
            except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
                raise ckpt.damaged(found.path, f"it does not fit this network: {type(exc).__name__}") from exc
    truncate_log(log_path, state.step)

    run_start = time.perf_counter()

    def seconds() -> float:
        return state.seconds_before + time.perf_counter() - run_start

    def save() -> CheckpointSaved:
        state.last_checkpoint = state.step
        path = ckpt.save_checkpoint(
            work / "checkpoints", step=state.step, model_state=network.state_dict(),
            ema_state=ema.state if ema is not None else None,
            optimizer_blob=_optimizer_blob(optimizer, scaler, noise_gen),
            state=_state_json(config, state, seconds(), sampler, rng, ema))
        return CheckpointSaved(state.step, path)

    def validate() -> ValidationDone | None:
        if not val_items:
            return None
        state.last_validation = state.step
        result = run_validation(objective, _eval_network(network, ema, objective, in_channels, device),
                                val_items, device, seed=config.seed, with_preview=True)
        preview = result.pop("preview", None)
        result["step"] = state.step
        state.last = result
        is_best = math.isfinite(result["val_r"]) and (state.best is None or result["val_r"] > state.best["val_r"])
        if is_best:
            state.best = result
            ckpt.save_state_dict(work / "best.safetensors", ema.state if ema is not None else network.state_dict())
            (work / "best.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
        append_log(log_path, state.step, seconds(), None, result["val_r"], optimizer.param_groups[0]["lr"])
        return ValidationDone(state.step, result["val_r"], is_best, result, preview)

    yield TrainStarted(state.step, config.max_steps, str(device), work, len(config.pairs), len(val_items),
                       in_channels, sum(p.numel() for p in network.parameters()))
    stop_reason = "max_steps"
    try:  # closed at any event up to the last checkpoint (a pause, Ctrl-C, SIGTERM): the step reached is saved
        while state.step < config.max_steps:
            if should_stop is not None and should_stop():
                stop_reason = "stopped"
                break
            if config.max_minutes is not None and time.perf_counter() - run_start >= 60 * config.max_minutes:
                stop_reason = "max_minutes"
                break
            if _no_longer_improving(config, state):
                stop_reason = "early_stop"
                break
            spent = seconds() / (60 * config.max_minutes) if config.max_minutes else 0.0
            lr = lr_at(state.step, base_lr=config.resolved_lr, max_steps=config.max_steps,
                       warmup_steps=config.warmup_steps, schedule=config.lr_schedule, time_fraction=spent)
            set_lr(optimizer, lr)
            loss = _train_step(config, objective, network, optimizer, scaler, amp_dtype, sampler, noise_gen, device,
                               memory_format)
            if ema is not None:
                ema.update(network)
            state.step += 1
            state.loss_sum += loss
            state.loss_count += 1
            if state.step % LOG_EVERY == 0 or state.step == config.max_steps:
                append_log(log_path, state.step, seconds(), state.loss_sum / state.loss_count, None, lr)
                state.loss_sum, state.loss_count = 0.0, 0
            yield StepDone(state.step, config.max_steps, loss, lr, seconds())
            ckpt.save_snapshots(work / "snapshots", config.snapshot_minutes, seconds(),
                                lambda: ema.state if ema is not None else network.state_dict())
            if config.val_every > 0 and state.step % config.val_every == 0:
                event = validate()
                if event is not None:
                    yield event
            if config.checkpoint_every > 0 and state.step % config.checkpoint_every == 0:
                yield save()
        if state.step != state.last_validation:
            event = validate()
            if event is not None:
                yield event
        if state.step != state.last_checkpoint:
            yield save()
    except GeneratorExit:
        if state.step != state.last_checkpoint:
            save()  # pause: keep the progress so far; no package
        raise
    keep_final = _keeps_final_weights(config, stop_reason)
    package = _write_package(config, work, network, ema, objective, in_channels, z_as_channels,
                             state, seconds(), str(device), stop_reason, parent, keep_final, trust)
    best = state.best or {}
    kept = (state.last if keep_final else state.best) or {}
    yield TrainFinished(package, state.step, seconds(), stop_reason, best.get("val_r"), best.get("step"),
                        kept.get("val_r"), kept.get("step"))
    return package


# --- one step --------------------------------------------------------------------------------
def _train_step(config: TrainConfig, objective: Objective, network: torch.nn.Module,
                optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, amp_dtype: torch.dtype | None,
                sampler: PatchSampler, noise_gen: torch.Generator, device: torch.device,
                memory_format: torch.memory_format) -> float:
    x_np, y_np = sampler.sample(config.batch_size)
    x = torch.from_numpy(x_np).to(device, non_blocking=True).contiguous(memory_format=memory_format)
    y = torch.from_numpy(y_np).to(device, non_blocking=True).contiguous(memory_format=memory_format)
    autocast = (torch.autocast("cuda", dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext())
    with autocast:
        loss = objective.loss(network, x, y, noise_gen)
    if not torch.isfinite(loss):
        raise TrainingDataError(
            f"Training diverged at a loss of {float(loss)}; lower the learning rate (now {config.resolved_lr}).")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if config.grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(network.parameters(), config.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach())


def _no_longer_improving(config: TrainConfig, state: _Run) -> bool:
    """Early stopping: ``early_stop_patience`` validations have passed since the best one."""
    if config.early_stop_patience <= 0 or config.val_every <= 0 or state.best is None:
        return False
    return state.step - int(state.best["step"]) >= config.early_stop_patience * config.val_every


def _keeps_final_weights(config: TrainConfig, stop_reason: str) -> bool:
    """An annealed run that used its whole budget keeps its final weights: on small validation
    regions the best-scoring step is mostly noise, and the final weights scored as well or better
    on unseen fields in 8 of 8 runs (issue 13). Early-stopped, stopped and constant-rate runs keep
    the best validated weights."""
    return config.lr_schedule != "constant" and stop_reason in ("max_steps", "max_minutes")


def _memory_format(config: TrainConfig, device: torch.device) -> torch.memory_format:
    """channels_last for 2D on the CPU: 1.36-1.45x faster U-Net steps, 1.04-1.18x denoiser (bench_train_step)."""
    return torch.channels_last if config.dims == 2 and device.type == "cpu" else torch.contiguous_format


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if not config.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _eval_network(network: torch.nn.Module, ema: EMA | None, objective: Objective, in_channels: int,
                  device: torch.device) -> torch.nn.Module:
    """The network to validate: the EMA weights where the run keeps them, else the live weights."""
    if ema is None:
        return network
    shadow = copy.deepcopy(network)  # not build(): that would draw from the global torch RNG
    shadow.load_state_dict(ema.state)
    return shadow


# --- data ------------------------------------------------------------------------------------
def _load(config: TrainConfig, spec: Any) -> LoadedPair:
    return load_pair(spec, dims=config.dims, input_normalization=config.input_normalization,
                     pixel_size_um=config.pixel_size_um)


def _load_all(config: TrainConfig, region: Region | None, max_val: tuple[int, ...] | None, seen: InputSample
              ) -> Generator[LoadingData, None, tuple[dict[int, LoadedPair], list[LoadedPair], list[ValItem]]]:
    """Read every pair once to check it (and show its input to ``seen``); keep the first ``buffer_size``.

    Returns the kept pairs, a one-pixel summary of every pair (for the channel check) and the
    validation crops of the validation region.
    """
    kept: dict[int, LoadedPair] = {}
    summaries: list[LoadedPair] = []
    items: list[ValItem] = []
    total = len(config.pairs) + len(config.val_pairs)
    for index, spec in enumerate(config.pairs):
        yield LoadingData(index, total, Path(spec.target).name)
        pair = _load(config, spec)
        seen.add(index, pair.input)
        if region is not None:
            items += validation_items([pair], region, [], max_shape=max_val)
        if index < config.buffer_size:
            kept[index] = pair
        corner = (slice(None),) + (slice(0, 1),) * config.dims
        summaries.append(LoadedPair(spec, pair.input[corner], pair.target[corner], pair.z_as_channels))
    yield LoadingData(len(config.pairs), total, "")
    return kept, summaries, items


def _refuse_to_clobber(config: TrainConfig, work: Path) -> None:
    """Refuse to overwrite an earlier run unless resuming or told to overwrite (no side effects)."""
    out = Path(config.out_dir)
    for folder in (out, work):
        if folder.exists() and not folder.is_dir():
            raise TrainingDataError(f"{folder} is a file, not a folder; choose a folder for the model.", path=folder)
    if config.resume or config.overwrite:
        return
    if out.exists() and any(out.iterdir()):
        raise TrainingDataError(
            f"The output folder {out} already holds files; choose another folder or allow overwriting.", path=out)
    if ckpt.list_checkpoints(work / "checkpoints"):
        raise TrainingDataError(f"{work} holds an earlier training run; resume it or allow overwriting.", path=work)


def _prepare_work_dir(config: TrainConfig, work: Path) -> None:
    """Create the work folder; a fresh run with ``overwrite`` first removes the earlier run's files."""
    if config.overwrite and not config.resume:
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
        for name in ("log.csv", "best.safetensors", "best.json"):
            (work / name).unlink(missing_ok=True)
    work.mkdir(parents=True, exist_ok=True)


# --- checkpoints and logs --------------------------------------------------------------------
def _optimizer_blob(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                    noise_gen: torch.Generator) -> dict[str, Any]:
    blob: dict[str, Any] = {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                            "torch_rng": torch.get_rng_state(), "noise_rng": noise_gen.get_state()}
    if torch.cuda.is_available():
        blob["cuda_rng"] = torch.cuda.get_rng_state_all()
    return blob


def _state_json(config: TrainConfig, state: _Run, seconds: float, sampler: PatchSampler,
                rng: np.random.Generator, ema: EMA | None) -> dict[str, Any]:
    return {"seconds": seconds, "best": state.best, "loss_sum": state.loss_sum, "loss_count": state.loss_count,
            "last_validation": state.last_validation, "sampler": sampler.state(),
            "numpy_rng": rng.bit_generator.state, "ema_updates": ema.updates if ema is not None else 0,
            "fingerprint": config.fingerprint()}


def _restore(found: ckpt.Checkpoint, config: TrainConfig, state: _Run, network: torch.nn.Module,
             optimizer: torch.optim.Optimizer, ema: EMA | None, scaler: torch.amp.GradScaler,
             sampler: PatchSampler, rng: np.random.Generator, noise_gen: torch.Generator,
             device: torch.device) -> None:
    saved = found.state
    if saved.get("fingerprint") != config.fingerprint():
        raise TrainingDataError(
            f"The checkpoint in {found.path} was made with other model settings; resume with the same "
            "settings or start a new run.", path=found.path)
    network.load_state_dict(found.model_state)
    optimizer.load_state_dict(found.optimizer_blob["optimizer"])
    scaler.load_state_dict(found.optimizer_blob["scaler"])
    if ema is not None and found.ema_state is not None:
        ema.load({k: v.to(device) for k, v in found.ema_state.items()}, int(saved.get("ema_updates", 0)))
    torch.set_rng_state(found.optimizer_blob["torch_rng"])
    noise_gen.set_state(found.optimizer_blob["noise_rng"])
    if "cuda_rng" in found.optimizer_blob and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(found.optimizer_blob["cuda_rng"])
    rng.bit_generator.state = saved["numpy_rng"]
    sampler.restore(saved["sampler"])
    for index in sampler.buffer:
        sampler.entry(index)
    state.step = found.step
    state.last_checkpoint = found.step
    state.seconds_before = float(saved["seconds"])
    state.best = saved.get("best")
    state.loss_sum, state.loss_count = float(saved["loss_sum"]), int(saved["loss_count"])
    state.last_validation = int(saved.get("last_validation", -1))


# --- package ---------------------------------------------------------------------------------
def _write_package(config: TrainConfig, work: Path, network: torch.nn.Module, ema: EMA | None,
                   objective: Objective, in_channels: int, z_as_channels: bool, state: _Run,
                   seconds: float, device: str, stop_reason: str, parent: Parent | None,
                   keep_final: bool, trust: dict[str, Any] | None) -> Path:
    from safetensors.torch import load_file

    from labelfree_app.models.package import save_package

    if not keep_final and state.best is not None and (work / "best.safetensors").is_file():
        weights = load_file(str(work / "best.safetensors"))
    else:
        source = ema.state if ema is not None else network.state_dict()
        weights = {k: v.detach().cpu().contiguous() for k, v in source.items()}
    record = TrainingRecord(arch_id=objective.arch_id, arch_kwargs=objective.architecture_kwargs(in_channels),
                            in_channels=in_channels, z_as_channels=z_as_channels, steps=state.step,
                            seconds=seconds, device=device, stop_reason=stop_reason,
                            validation=(state.last or state.best) if keep_final else state.best,
                            parent=parent.record() if parent is not None else None,
                            stain_units=target_units(config.pairs), kept_final=keep_final, trust=trust)
    manifest = build_manifest(config, record)
    return Path(save_package(config.out_dir, manifest, weights, overwrite=True))
