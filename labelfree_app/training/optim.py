"""Optimiser pieces: AdamW, the learning-rate schedule, and an EMA of the weights."""

from __future__ import annotations

import math

import torch
from torch import nn

SCHEDULES = ("cosine", "step", "constant")


def build_optimizer(network: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; norms and biases are not decayed."""
    decay, no_decay = [], []
    for name, param in network.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def lr_at(step: int, *, base_lr: float, max_steps: int, warmup_steps: int, schedule: str,
          time_fraction: float = 0.0) -> float:
    """Learning rate for optimisation step ``step`` (0-based): linear warmup, then the schedule.

    ``time_fraction`` is the share of a time budget already spent: the schedule follows whichever
    of steps and time runs out first, so a run cut short by its minutes still ends annealed.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; use one of {', '.join(SCHEDULES)}")
    warmup = min(warmup_steps, max(max_steps // 10, 0))
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    if schedule == "constant":
        return base_lr
    progress = max((step - warmup) / max(1, max_steps - warmup), time_fraction)
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "step":
        return base_lr * (0.1 if progress >= 0.6 else 1.0) * (0.1 if progress >= 0.85 else 1.0)
    floor = 0.01 * base_lr
    return floor + 0.5 * (base_lr - floor) * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class EMA:
    """Exponential moving average of a network's state (parameters averaged, buffers copied).

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` so a short run is not dominated
    by the random initial weights.
    """

    def __init__(self, network: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in network.state_dict().items()}

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for key, value in network.state_dict().items():
            average = self.state[key]
            if value.dtype.is_floating_point:
                average.mul_(decay).add_(value.detach(), alpha=1 - decay)
            else:
                average.copy_(value)

    def load(self, state: dict[str, torch.Tensor], updates: int) -> None:
        for key, value in state.items():
            self.state[key].copy_(value)
        self.updates = updates
