"""Choosing which scored units go: the lowest in each layer, or the lowest overall.

Scores of different layers live on different scales, so a global choice
compares each layer's scores divided by that layer's L2 norm (the
normalisation Michel et al. found necessary for head pruning), and always
leaves every layer at least one unit.
"""

from __future__ import annotations

import torch
from torch import Tensor


def lowest_per_layer(scores: list[Tensor], counts: list[int]) -> list[list[int]]:
    """The ``counts[i]`` lowest-scoring unit indices of every layer ``i``."""
    return [
        sorted(torch.argsort(score, stable=True)[:count].tolist())
        for score, count in zip(scores, counts, strict=True)
    ]


def lowest_global(scores: list[Tensor], total: int) -> list[list[int]]:
    """The ``total`` lowest units across layers by normalised score; each layer keeps one."""
    normalised = [score / score.norm().clamp_min(1e-12) for score in scores]
    # A layer's best unit is never a candidate, so no layer can lose every unit.
    best = [int(torch.argmax(score)) for score in normalised]
    candidates = [
        (float(value), layer, unit)
        for layer, score in enumerate(normalised)
        for unit, value in enumerate(score.tolist())
        if unit != best[layer]
    ]
    candidates.sort()
    chosen: list[list[int]] = [[] for _ in scores]
    for _, layer, unit in candidates[:total]:
        chosen[layer].append(unit)
    return [sorted(units) for units in chosen]


def fraction_count(fraction: float, size: int, step: int = 1) -> int:
    """``fraction`` of ``size`` units, rounded to the nearest multiple of ``step``."""
    return round(fraction * size / step) * step
