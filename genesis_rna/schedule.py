"""Learning-rate schedules: linear warmup, then cosine / linear decay to min_lr_ratio, or constant."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

SCHEDULERS = ("cosine", "linear", "constant")


def lr_at(step: int, kind: str, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak LR for optimizer step ``step`` (0-based).

    Warmup rises as (step + 1) / (warmup + 1), reaching 1 at ``step == warmup_steps``; decay
    ends at ``min_lr_ratio`` at ``total_steps`` and stays there after.
    """
    if kind not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {kind!r}; choose from {SCHEDULERS}")
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if kind == "constant":
        return 1.0
    span = max(total_steps - warmup_steps, 1)
    progress = min(max((step - warmup_steps) / span, 0.0), 1.0)
    if kind == "cosine":
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0 - (1 - min_lr_ratio) * progress


class _Multiplier:
    """A callable object, not a lambda: LambdaLR stores its __dict__ (plain numbers) in
    the scheduler state dict, which therefore loads with ``weights_only=True``."""

    def __init__(self, kind: str, warmup_steps: int, total_steps: int, min_lr_ratio: float):
        self.kind, self.warmup_steps = kind, warmup_steps
        self.total_steps, self.min_lr_ratio = total_steps, min_lr_ratio

    def __call__(self, step: int) -> float:
        return lr_at(step, self.kind, self.warmup_steps, self.total_steps, self.min_lr_ratio)


def get_lr_scheduler(optimizer: torch.optim.Optimizer, kind: str = "cosine",
                     warmup_steps: int = 0, total_steps: int = 1,
                     min_lr_ratio: float = 0.1) -> LambdaLR:
    if kind not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {kind!r}; choose from {SCHEDULERS}")
    return LambdaLR(optimizer, _Multiplier(kind, warmup_steps, total_steps, min_lr_ratio))
