"""Learning-rate schedule: linear warm-up, then linear decay to zero.

Warm-up keeps AdamW's first, badly-estimated moments from wrecking weights
copied from a teacher; the decay lets a short run settle instead of ending on
a large step.
"""

from __future__ import annotations

import torch


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
