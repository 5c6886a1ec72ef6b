"""Attach learnable masks to linear weights, and fold them in at the end.

The mask rides on ``torch.nn.utils.parametrize``: the layer stays an
``nn.Linear`` (adapters, hooks and the trainer see the usual module) while
its ``weight`` reads as ``W * M``. Folding keeps the masked values, removes
the parametrization and the scores, and leaves a plain model whose pruned
weights are exactly zero.

Hand-over to sparse storage: :func:`fold_masks` returns the boolean
keep-masks by layer name, and the stage stores each folded layer with its
mask as a ``SparseLinear`` (a weight that happens to be zero but was kept
stays a stored value, so the mask is the stage's, not re-derived from zeros).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils import parametrize

from slimformer.methods.movement.binarize import (
    ThresholdStraightThrough,
    TopKStraightThrough,
    topk_keep_mask,
)

Variant = Literal["hard", "soft", "magnitude"]
ScoreInit = Literal["zeros", "magnitude"]


class MovementMask(nn.Module):
    """The parametrization ``W -> W * M``; ``level`` is the sparsity (hard) or threshold (soft).

    ``magnitude`` ranks ``|W|`` instead of learned scores: the gradual
    magnitude baseline on the same schedule, with no scores to learn.
    """

    def __init__(self, weight: torch.Tensor, variant: Variant, init: ScoreInit = "zeros") -> None:
        super().__init__()
        self.variant = variant
        self.level = 0.0
        if variant != "magnitude":
            self.scores = nn.Parameter(initial_scores(weight, init))

    def mask(self, weight: torch.Tensor) -> torch.Tensor:
        if self.variant == "hard":
            return TopKStraightThrough.apply(self.scores, self.level)
        if self.variant == "soft":
            return ThresholdStraightThrough.apply(self.scores, self.level)
        return topk_keep_mask(weight.abs(), self.level)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask(weight).to(weight.dtype)


def initial_scores(weight: torch.Tensor, init: ScoreInit) -> torch.Tensor:
    """Scores before training: equal (Sanh et al.), or ``|W|`` over the layer's mean ``|W|``.

    Equal scores prefer nothing before the task has spoken, and the hard mask is
    then invariant to ``score_lr`` (Adam's steps scale every score alike, and a
    top-k ranking ignores scale). Magnitude scores start the ranking at
    magnitude pruning's and let movement revise it; ``score_lr`` then sets how
    many steps of consistent movement outweigh one mean magnitude.
    """
    if init == "zeros":
        return torch.zeros_like(weight, dtype=torch.float32)
    magnitude = weight.detach().abs().float()
    return magnitude / magnitude.mean().clamp_min(torch.finfo(torch.float32).tiny)


def attach_masks(
    linears: dict[str, nn.Linear], variant: Variant, init: ScoreInit = "zeros"
) -> dict[str, MovementMask]:
    """Parametrize every layer of ``linears``; returns the masks by layer name."""
    masks = {}
    for name, linear in linears.items():
        mask = MovementMask(linear.weight.detach(), variant, init)
        parametrize.register_parametrization(linear, "weight", mask)
        masks[name] = mask
    return masks


def set_level(masks: dict[str, MovementMask], level: float) -> None:
    for mask in masks.values():
        mask.level = level


def score_parameters(masks: dict[str, MovementMask]) -> list[nn.Parameter]:
    return [mask.scores for mask in masks.values() if hasattr(mask, "scores")]


def fold_masks(linears: dict[str, nn.Linear]) -> dict[str, torch.Tensor]:
    """Bake ``W * M`` into each weight, drop the parametrization; returns keep-masks by name."""
    kept = {}
    for name, linear in linears.items():
        with torch.no_grad():
            parts = linear.parametrizations.weight
            kept[name] = parts[0].mask(parts.original).bool()
        parametrize.remove_parametrizations(linear, "weight", leave_parametrized=True)
    return kept
