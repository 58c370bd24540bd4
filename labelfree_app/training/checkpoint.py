"""Training checkpoints that can be resumed exactly, without pickles.

A checkpoint is a folder ``checkpoints/step-000500/`` holding
``model.safetensors`` (weights), ``ema.safetensors`` (diffusion EMA weights, if any),
``optimizer.pt`` (optimizer, AMP scaler and torch RNG states: tensors, numbers, lists and dicts
only, read back with ``torch.load(weights_only=True)``) and ``state.json`` (step, seconds,
best validation, numpy RNG and sampler state, the settings fingerprint). It is written to a
temporary folder and renamed into place, so a crash never leaves a half checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from safetensors.torch import load_file, save_file

from labelfree_app.errors import TrainingDataError

PREFIX = "step-"
KEEP = 2


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read back from disk."""

    path: Path
    step: int
    model_state: dict[str, torch.Tensor]
    ema_state: dict[str, torch.Tensor] | None
    optimizer_blob: dict[str, Any]
    state: dict[str, Any]


def save_state_dict(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Write a state dict as safetensors (contiguous CPU copies; shared storage is split)."""
    save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}, str(path))


def save_snapshots(folder: Path, minutes: Sequence[float], seconds: float,
                   state: Callable[[], dict[str, torch.Tensor]]) -> None:
    """Weights at each of the ``minutes`` marks that ``seconds`` of training have passed, once each
    (``<m>min.safetensors``; for learning curves)."""
    for mark in minutes:
        path = Path(folder) / f"{mark:g}min.safetensors"
        if seconds >= 60 * mark and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            save_state_dict(path, state())


def save_checkpoint(
    folder: Path,
    *,
    step: int,
    model_state: dict[str, torch.Tensor],
    ema_state: dict[str, torch.Tensor] | None,
    optimizer_blob: dict[str, Any],
    state: dict[str, Any],
) -> Path:
    """Write checkpoint ``step`` under ``folder`` and keep only the newest few."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{PREFIX}{step:08d}"
    tmp = folder / f".tmp-{PREFIX}{step:08d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        save_state_dict(tmp / "model.safetensors", model_state)
        if ema_state is not None:
            save_state_dict(tmp / "ema.safetensors", ema_state)
        torch.save(optimizer_blob, tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=1), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for old in list_checkpoints(folder)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
             and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def load_checkpoint(path: Path) -> Checkpoint:
    """Read one checkpoint folder (weights via safetensors, the rest with weights_only=True)."""
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        model_state = load_file(str(path / "model.safetensors"))
        ema_path = path / "ema.safetensors"
        ema_state = load_file(str(ema_path)) if ema_path.is_file() else None
        blob = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - safetensors, pickle (a refused class) and json raise their own kinds
        raise damaged(path, f"a file cannot be read: {type(exc).__name__}") from exc
    step = state.get("step") if isinstance(state, dict) else None
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise damaged(path, "its state.json records no step")
    if not isinstance(blob, dict) or not {"optimizer", "scaler", "torch_rng", "noise_rng"} <= set(blob):
        raise damaged(path, "its optimizer state lacks parts a resume needs")
    return Checkpoint(path=path, step=step, model_state=model_state, ema_state=ema_state,
                      optimizer_blob=blob, state=state)


def damaged(path: Path, why: str) -> TrainingDataError:
    """The sentence for a checkpoint that cannot be resumed: what is wrong, and how to go on."""
    return TrainingDataError(f"The checkpoint {path} cannot be resumed ({why}); delete that folder to resume from "
                             "an earlier checkpoint, or leave out --resume to start again.", path=path)


def check_optimizer_state(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """After ``load_state_dict``: every per-parameter tensor has its parameter's shape and every
    hyper-parameter is a finite number, so a tampered state fails here and not steps later."""
    import math

    for group in optimizer.param_groups:
        for key in ("lr", "weight_decay", "eps"):
            value = group.get(key, 0.0)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise damaged(path, f"its optimizer's {key} is {value!r}")
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                    raise damaged(path, f"its optimizer's {name} has shape {tuple(value.shape)}, not "
                                        f"{tuple(param.shape)}")


def load_latest_checkpoint(folder: Path) -> Checkpoint | None:
    """The newest checkpoint in ``folder``, or None."""
    found = list_checkpoints(folder)
    return load_checkpoint(found[-1]) if found else None
