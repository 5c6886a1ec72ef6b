"""How much each attention head matters: by the loss's gradient, or by its output.

``gradient`` is the head-mask importance of Michel et al., "Are Sixteen Heads
Really Better than One?" (2019): a mask of ones scales each head's output,
and the expected magnitude of the loss's derivative by a head's mask entry
says how much the loss would move were the head taken away. ``activation``
needs no loss: the mean norm of what each head adds to the residual stream
(its output through its own columns of the output projection).

Both read each head's output where every family has it, at the input of the
attention output projection (one slice of ``head_dim`` per head), so no
model class is touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from slimformer.arch.base import AttentionParts
from slimformer.methods.structured.scoring import (
    ScoringBatch,
    batch_loss,
    gradients_to_inputs_only,
    masked_token_sum,
)
from slimformer.model import SlimModel


def head_importance(slim: SlimModel, batches: list[ScoringBatch], kind: str) -> list[Tensor]:
    """One score per query head of every layer; higher means the head matters more."""
    if kind == "gradient":
        return _gradient_importance(slim, batches)
    return _activation_importance(slim, batches)


def _gradient_importance(slim: SlimModel, batches: list[ScoringBatch]) -> list[Tensor]:
    atts = [layer.attention for layer in slim.adapter.layers()]
    masks = [torch.ones(att.num_heads, requires_grad=True) for att in atts]
    scores = [torch.zeros(att.num_heads) for att in atts]

    def scaler(att: AttentionParts, mask: Tensor) -> Callable:
        def scale(_module, args):
            x = args[0]
            return (x * mask.to(x.dtype).repeat_interleave(att.head_dim), *args[1:])

        return scale

    with (
        gradients_to_inputs_only(slim.model),
        _pre_hooks(atts, [scaler(a, m) for a, m in zip(atts, masks, strict=True)]),
    ):
        for batch in batches:
            batch_loss(slim, batch).backward()
            for mask, score in zip(masks, scores, strict=True):
                score += mask.grad.abs()
                mask.grad = None
    return [score / len(batches) for score in scores]


def _activation_importance(slim: SlimModel, batches: list[ScoringBatch]) -> list[Tensor]:
    atts = [layer.attention for layer in slim.adapter.layers()]
    scores = [torch.zeros(att.num_heads) for att in atts]
    state: dict[str, Tensor] = {}

    def measure(att: AttentionParts, score: Tensor) -> Callable:
        def record(_module, args):
            x = args[0].float()
            heads = x.view(*x.shape[:-1], att.num_heads, att.head_dim)
            weight = att.o.weight.float().view(-1, att.num_heads, att.head_dim)
            # What each head adds to the residual stream: its slice through its o columns.
            added = torch.einsum("bthd,ohd->btho", heads, weight).norm(dim=-1)
            score.add_(masked_token_sum(added, state["mask"]))

        return record

    tokens = 0
    with (
        torch.no_grad(),
        _pre_hooks(atts, [measure(a, s) for a, s in zip(atts, scores, strict=True)]),
    ):
        for batch in batches:
            state["mask"] = batch.mask
            tokens += int(batch.mask.sum())
            slim.model(**batch.inputs)
    return [score / tokens for score in scores]


@contextmanager
def _pre_hooks(atts: list[AttentionParts], hooks: list[Callable]) -> Iterator[None]:
    handles = [att.o.register_forward_pre_hook(hook) for att, hook in zip(atts, hooks, strict=True)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
