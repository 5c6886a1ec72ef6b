"""How much each whole layer matters: by how much it changes its input, or the loss.

``similarity`` is ShortGPT's Block Influence (Men et al., "ShortGPT: Layers in
Large Language Models are More Redundant Than You Expect", 2024): one minus
the mean cosine similarity of a layer's input and output hidden states; a
layer that barely turns its input changes little when skipped. ``loss``
measures instead: the model's loss with the layer skipped, minus the loss
with it, one layer at a time (one pass over the data per layer).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from slimformer.methods.structured.scoring import ScoringBatch, batch_loss, masked_token_sum
from slimformer.model import SlimModel


def layer_importance(slim: SlimModel, batches: list[ScoringBatch], kind: str) -> Tensor:
    """One score per layer of the stack; higher means the layer matters more."""
    stack = slim.adapter.layer_stack()
    with torch.no_grad():
        if kind == "loss":
            return _loss_increase(slim, batches, stack)
        return _block_influence(slim, batches, stack)


def _block_influence(slim, batches, stack: nn.ModuleList) -> Tensor:
    cosine = torch.zeros(len(stack))
    state: dict = {}

    def remember_input(_module, args, kwargs):
        state["input"] = args[0] if args else kwargs["hidden_states"]

    def compare(index: int):
        def hook(_module, _args, _kwargs, output):
            out = output if isinstance(output, Tensor) else output[0]
            cos = nn.functional.cosine_similarity(out.float(), state["input"].float(), dim=-1)
            cosine[index] += masked_token_sum(cos, state["mask"])

        return hook

    handles = []
    for index, block in enumerate(stack):
        handles.append(block.register_forward_pre_hook(remember_input, with_kwargs=True))
        handles.append(block.register_forward_hook(compare(index), with_kwargs=True))
    tokens = 0
    try:
        for batch in batches:
            state["mask"] = batch.mask
            tokens += int(batch.mask.sum())
            slim.model(**batch.inputs)
    finally:
        for handle in handles:
            handle.remove()
    return 1 - cosine / tokens


def _loss_increase(slim, batches, stack: nn.ModuleList) -> Tensor:
    def mean_loss() -> float:
        return sum(float(batch_loss(slim, batch)) for batch in batches) / len(batches)

    base = mean_loss()
    increases = torch.zeros(len(stack))
    for index, block in enumerate(stack):
        with _skipped(block):
            increases[index] = mean_loss() - base
    return increases


@contextmanager
def _skipped(block: nn.Module) -> Iterator[None]:
    """The block hands its input on unchanged, in the form its output has."""

    def identity(_module, args, kwargs, output):
        hidden = args[0] if args else kwargs["hidden_states"]
        return hidden if isinstance(output, Tensor) else (hidden, *output[1:])

    handle = block.register_forward_hook(identity, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
