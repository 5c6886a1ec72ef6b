"""Which weights survive: exact-count masks from a score (lower score = pruned first).

Every method scores weights its own way (|W|, |W| * ‖x‖, W² / [H^-1]²) and
then asks one of these for a keep-mask with an exact number of zeros, so
"50%" means half of the weights, ties included, not "about half".
Masks are bool, True where a weight is kept.
"""

from __future__ import annotations

import torch

from slimformer.methods.pruning.settings import NMPattern


def pruned_count(numel: int, sparsity: float) -> int:
    """How many of ``numel`` weights a sparsity removes (rounded to the nearest)."""
    return min(numel, max(0, round(numel * sparsity)))


def keep_lowest_pruned(score: torch.Tensor, count: int) -> torch.Tensor:
    """Keep-mask of ``score``'s shape with exactly its ``count`` lowest entries pruned."""
    keep = torch.ones(score.numel(), dtype=torch.bool, device=score.device)
    if count > 0:
        keep[score.reshape(-1).topk(count, largest=False).indices] = False
    return keep.reshape(score.shape)


def keep_per_row(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask pruning the same number of lowest scores in every row ``[rows, cols]``."""
    count = pruned_count(score.shape[1], sparsity)
    keep = torch.ones_like(score, dtype=torch.bool)
    if count > 0:
        keep.scatter_(1, score.topk(count, dim=1, largest=False).indices, False)
    return keep


def keep_n_of_m(score: torch.Tensor, nm: NMPattern) -> torch.Tensor:
    """Keep-mask with the N highest scores of every M consecutive columns of each row."""
    rows, cols = score.shape
    groups = score.reshape(rows, cols // nm.m, nm.m)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(2, groups.topk(nm.n, dim=2).indices, True)
    return keep.reshape(rows, cols)


def keep_within_rows(score: torch.Tensor, sparsity: float, nm: NMPattern | None) -> torch.Tensor:
    """Row-wise selection (Wanda's comparison group): N:M groups, or a share of each row."""
    return keep_n_of_m(score, nm) if nm is not None else keep_per_row(score, sparsity)
