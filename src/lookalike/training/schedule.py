"""Learning-rate schedule: linear warm-up, then cosine decay; per param group, optionally delayed."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

__all__ = ["warmup_cosine", "warmup_cosine_factor"]


def warmup_cosine_factor(step: int, *, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """The factor at ``step``: rises linearly to 1 over ``warmup_steps``, then follows a cosine to
    ``min_lr_ratio`` at ``total_steps`` (and stays there)."""
    total_steps = max(1, total_steps)
    warmup_steps = min(max(0, warmup_steps), total_steps)
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    warmup_steps: int,
    min_lr_ratio: float = 0.01,
    group_starts: Sequence[int] | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step schedule: factor rises linearly to 1 over ``warmup_steps``, then follows a cosine to
    ``min_lr_ratio`` at ``total_steps``. Every param group keeps its own base learning rate.

    ``group_starts`` (one step per param group) delays a group: its factor is 0 before its start,
    then it runs its own warm-up and a cosine over the steps left until ``total_steps`` (the backbone
    after a head-first phase).
    """
    starts = [0] * len(optimizer.param_groups) if group_starts is None else list(group_starts)
    if len(starts) != len(optimizer.param_groups):
        raise ValueError(
            f"group_starts has {len(starts)} entries but the optimizer has {len(optimizer.param_groups)} "
            "param groups; give one start step per group"
        )

    def delayed(start: int) -> Callable[[int], float]:
        def factor(step: int) -> float:
            if step < start:
                return 0.0
            return warmup_cosine_factor(
                step - start,
                total_steps=total_steps - start,
                warmup_steps=warmup_steps,
                min_lr_ratio=min_lr_ratio,
            )

        return factor

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [delayed(s) for s in starts])
