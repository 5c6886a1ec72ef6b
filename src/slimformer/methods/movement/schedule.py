"""The cubic sparsity schedule of gradual pruning (Zhu & Gupta 2017, used by Sanh et al.).

Sparsity rises fast while the network has much to spare and slowly near the
target, so the last, most damaging removals come with time to recover. The
warm-up lets scores learn before anything is pruned; the cool-down trains at
the final sparsity so the kept weights settle with the final mask.
"""

from __future__ import annotations


def cubic_sparsity(
    step: int, total_steps: int, target: float, warmup_steps: int, cooldown_steps: int
) -> float:
    """Sparsity at optimizer step ``step``: 0 in warm-up, ``target`` in cool-down, cubic between.

    ``s_t = s_f * (1 - (1 - p)^3)`` with ``p`` the share of the ramp done.
    """
    ramp_end = total_steps - cooldown_steps
    if step < warmup_steps:
        return 0.0
    if step >= ramp_end:
        return target
    progress = (step - warmup_steps) / (ramp_end - warmup_steps)
    return target * (1.0 - (1.0 - progress) ** 3)
