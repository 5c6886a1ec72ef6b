"""The SparseGPT solver for one linear layer: prune columns in order, fix the rest.

SparseGPT (Frantar & Alistarh, 2023) is GPTQ with "set to zero" in place of
"round": it walks the input columns in order, zeroes the chosen weights of
each column, and moves the error that causes onto the columns not yet
visited, weighted by the inverse Hessian of the layer's inputs (the Optimal
Brain Surgeon update, made cheap by sharing one H^-1 Cholesky factor across
all rows). Which weights go is decided with the same OBS saliency
``w² / [H^-1]_jj²``, on the weights as the updates left them:

- unstructured: once per block of columns (lazy batch), the lowest
  saliencies of the block within each layer's rows, with counts chosen so
  the whole layer reaches its sparsity exactly;
- N:M: group by group as the solve reaches each one, N kept in each row.

The Hessian preparation (dead inputs, dampening, the inverse Cholesky
factor) is shared with GPTQ: :mod:`slimformer.methods.hessian`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from slimformer.errors import SlimformerError
from slimformer.methods.hessian import inverse_cholesky, prepare_hessian
from slimformer.methods.pruning.masks import keep_lowest_pruned, keep_n_of_m, pruned_count
from slimformer.methods.pruning.settings import NMPattern


@dataclass
class SparseGPTResult:
    #: The updated float32 weight, exactly zero where ``keep`` is False.
    weight: torch.Tensor
    keep: torch.Tensor
    damp: float
    #: The OBS estimate of the output error the pruning caused, Σ (w_pruned / [H^-1]_jj)² / 2.
    loss: float


def sparsegpt_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float,
    nm: NMPattern | None = None,
    *,
    row_splits: Sequence[int] | None = None,
    damp: float = 0.01,
    block_size: int = 128,
    max_damp: float = 10.0,
    name: str = "layer",
) -> SparseGPTResult:
    """Prune ``weight`` [out, in] to ``sparsity`` (or ``nm``) given the input Hessian [in, in].

    ``row_splits`` are the row counts of layers stacked in ``weight`` (q, k
    and v read one input and share one solve); each reaches its sparsity on
    its own. Default: one layer.
    """
    rows, cols = weight.shape
    if nm is not None and block_size % nm.m:
        raise SlimformerError(
            f"block_size {block_size} does not hold whole {nm} groups",
            f"use a block_size that is a multiple of {nm.m}",
        )
    splits = list(row_splits or [rows])
    w, h = prepare_hessian(weight, hessian)
    h_inv, used_damp = inverse_cholesky(h, damp, max_damp, name)
    keep = torch.ones((rows, cols), dtype=torch.bool, device=w.device)
    loss = torch.zeros((), dtype=torch.float64, device=w.device)
    for start in range(0, cols, block_size):
        end = min(start + block_size, cols)
        diag = torch.diagonal(h_inv[start:end, start:end]).clone()
        h_rows = h_inv[start:end] / diag[:, None]
        block_w = w[:, start:end]
        if nm is None:
            keep[:, start:end] = _block_keep(block_w, diag, sparsity, splits, start, end)
        w_t = block_w.T.contiguous()
        err = _prune_block(w_t, keep[:, start:end].T, h_rows[:, start:end], diag, nm)
        w[:, start:end] = w_t.T
        loss += (err / diag[:, None]).square().sum() / 2
        w[:, end:] -= err.T @ h_rows[:, end:]
    if not torch.isfinite(w).all():
        raise SlimformerError(
            f"SparseGPT produced non-finite weights in {name}",
            "raise `damp`, or exclude this layer with `exclude`",
        )
    return SparseGPTResult(weight=w, keep=keep, damp=used_damp, loss=float(loss))


def _block_keep(block_w, diag, sparsity, splits, start, end) -> torch.Tensor:
    """Unstructured keep-mask of one block, lowest OBS saliencies pruned in each stacked layer.

    Block counts are differences of the rounded running totals, so every
    layer loses exactly ``round(rows * cols * sparsity)`` weights in all.
    """
    saliency = block_w.square() / diag.square()[None, :]
    parts = []
    for part in saliency.split(splits):
        count = pruned_count(part.shape[0] * end, sparsity) - pruned_count(
            part.shape[0] * start, sparsity
        )
        parts.append(keep_lowest_pruned(part, count))
    return torch.cat(parts)


def _prune_block(w_t, keep_t, h_rows, diag, nm) -> torch.Tensor:
    """Zero the pruned weights of one block column by column (``w_t`` ``[width, rows]``, updated).

    Returns the raw errors ``[width, rows]`` (the pruned weights as they were
    when their column was reached); ``h_rows`` are the block's rows of H^-1
    divided by their diagonal entry. With ``nm``, each group's mask is chosen
    (and written into ``keep_t``) when the solve reaches its first column.
    """
    err = torch.zeros_like(w_t)
    width = w_t.shape[0]
    for i in range(width):
        if nm is not None and i % nm.m == 0:
            group = w_t[i : i + nm.m].square() / diag[i : i + nm.m, None].square()
            keep_t[i : i + nm.m] = keep_n_of_m(group.T.contiguous(), nm).T
        column = w_t[i]
        pruned = ~keep_t[i]
        err[i] = torch.where(pruned, column, 0.0)
        w_t[i:].addr_(h_rows[i, i:], err[i], alpha=-1)
        column.masked_fill_(pruned, 0.0)
    return err
