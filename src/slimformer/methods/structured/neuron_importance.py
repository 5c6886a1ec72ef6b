"""How much each MLP neuron matters: first-order Taylor, or activation magnitude.

``taylor`` estimates the loss change from removing a neuron as
|activation x dL/dactivation|, summed over a sequence's tokens and averaged
over sequences (Molchanov et al., "Pruning Convolutional Neural Networks for
Resource Efficient Inference", 2017). ``activation`` needs no loss: the mean
magnitude of the neuron's activation times the norm of its column of the down
projection, i.e. how much it writes into the residual stream.

Both read the down projection's input, which is the neuron activations in
every family (after the GLU product in Llama), so no model class is touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from slimformer.arch.base import MLPParts
from slimformer.methods.structured.scoring import (
    ScoringBatch,
    batch_loss,
    gradients_to_inputs_only,
    masked_token_sum,
)
from slimformer.model import SlimModel


def neuron_importance(slim: SlimModel, batches: list[ScoringBatch], kind: str) -> list[Tensor]:
    """One score per MLP neuron of every layer; higher means the neuron matters more."""
    mlps = [layer.mlp for layer in slim.adapter.layers()]
    scores = [torch.zeros(mlp.intermediate_size) for mlp in mlps]
    if kind == "taylor":
        return _taylor(slim, batches, mlps, scores)
    return _activation(slim, batches, mlps, scores)


def _taylor(slim, batches, mlps: list[MLPParts], scores: list[Tensor]) -> list[Tensor]:
    # A gate of ones per sequence and neuron scales the activations; the loss's derivative
    # by a gate entry is exactly sum over that sequence's tokens of activation x gradient.
    gates: list[Tensor] = []

    def gate(index: int) -> Callable:
        def hook(_module, args):
            return (args[0] * gates[index].to(args[0].dtype), *args[1:])

        return hook

    examples = 0
    with (
        gradients_to_inputs_only(slim.model),
        _down_hooks(mlps, [gate(i) for i in range(len(mlps))]),
    ):
        for batch in batches:
            size = batch.mask.shape[0]
            gates[:] = [torch.ones(size, 1, m.intermediate_size, requires_grad=True) for m in mlps]
            examples += size
            batch_loss(slim, batch).backward()
            for score, g in zip(scores, gates, strict=True):
                score += g.grad.abs().sum(dim=(0, 1))
    return [score / examples for score in scores]


def _activation(slim, batches, mlps: list[MLPParts], scores: list[Tensor]) -> list[Tensor]:
    state: dict[str, Tensor] = {}

    def measure(score: Tensor) -> Callable:
        def hook(_module, args):
            score.add_(masked_token_sum(args[0].float().abs(), state["mask"]))

        return hook

    tokens = 0
    with torch.no_grad(), _down_hooks(mlps, [measure(s) for s in scores]):
        for batch in batches:
            state["mask"] = batch.mask
            tokens += int(batch.mask.sum())
            slim.model(**batch.inputs)
    columns = [mlp.down.weight.detach().float().norm(dim=0) for mlp in mlps]
    return [score / tokens * norm for score, norm in zip(scores, columns, strict=True)]


@contextmanager
def _down_hooks(mlps: list[MLPParts], hooks: list[Callable]) -> Iterator[None]:
    handles = [mlp.down.register_forward_pre_hook(h) for mlp, h in zip(mlps, hooks, strict=True)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
