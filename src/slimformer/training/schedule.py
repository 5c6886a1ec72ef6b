"""Learning-rate schedules: linear warm-up, then linear decay to zero (or a constant rate).

Warm-up keeps AdamW's first, badly-estimated moments from wrecking weights
copied from a teacher; the decay lets a short run settle instead of ending on
a large step. The constant rate is the plain fine-tune's (the zoo's cached
classifiers were trained with it, and must stay bit-identical).
"""

from __future__ import annotations

import torch

from slimformer.training.settings import Schedule


def warmup_then(
    schedule: Schedule, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The scheduler for ``schedule``: warm-up, then linear decay or a constant rate."""
    if schedule == "linear":
        return warmup_linear_decay(optimizer, total_steps, warmup_steps)
    return warmup_constant(optimizer, total_steps, warmup_steps)


def warmup_linear_decay(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler whose factor rises 0 -> 1 over ``warmup_steps`` and falls to 0 at the end."""
    total_steps = max(1, total_steps)
    warmup_steps = min(max(0, warmup_steps), total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        remaining = total_steps - step
        return max(0.0, remaining / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def warmup_constant(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler whose factor rises 0 -> 1 over ``warmup_steps`` and then stays at 1."""
    warmup_steps = min(max(0, warmup_steps), max(1, total_steps))

    def factor(step: int) -> float:
        return (step + 1) / (warmup_steps + 1) if step < warmup_steps else 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
