"""``narrow``: a student with fewer attention heads and a narrower feed-forward block.

Each layer keeps the teacher's most important heads and FFN neurons (or a
random choice, as a baseline); ``arch/surgery.py`` slices the rest out of
the weights and the config. Importance is read from the weights: a neuron's
``||W_up[j]|| * ||W_down[:, j]||`` (times its gate row under a GLU) and a
head's value-output path ``||W_v[h]|| * ||W_o[:, h]||``. That needs no data
and keeps the teacher's strongest paths; the student then recovers by
distillation.

Heads keep their size. Under grouped-query attention (Llama-family models
with fewer key/value heads than query heads) the kept heads must leave equal
groups: ``gqa: within_groups`` keeps the same number of query heads in every
group (and every key/value head), ``gqa: whole_groups`` keeps whole groups
(a group's importance is the sum of its heads'). BERT's config derives head
size from the head count, so a BERT student with fewer heads records its
per-layer sizes in the saved metadata (``arch/structure.py``) and
``slimformer.load`` rebuilds it.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from pydantic import model_validator
from torch import Tensor

from slimformer.arch.base import Adapter, AttentionParts, MLPParts
from slimformer.arch.surgery import (
    check_head_removal,
    check_plain,
    remove_heads,
    remove_neurons,
    sync_config,
)
from slimformer.errors import SlimformerError
from slimformer.methods.apply import apply_method
from slimformer.methods.base import MethodConfig, StageContext, register_method
from slimformer.model import SlimModel

Init = Literal["importance", "random"]
Grouping = Literal["within_groups", "whole_groups"]


class Narrow(MethodConfig):
    """Keep the most important (or random) heads and FFN neurons of every layer."""

    method = "narrow"
    family = "students"

    #: Query heads every layer keeps (None: all).
    heads: int | None = None
    #: FFN neurons every layer keeps (None: all).
    intermediate_size: int | None = None
    #: ``importance``: the strongest weight paths; ``random``: a seeded baseline.
    init: Init = "importance"
    #: Grouped-query attention: the same number of heads kept in every group, or whole groups.
    gqa: Grouping = "within_groups"
    seed: int = 0

    @model_validator(mode="after")
    def _something_to_narrow(self) -> Narrow:
        if self.heads is None and self.intermediate_size is None:
            raise ValueError("give `heads`, `intermediate_size` or both")
        return self


def narrow(
    teacher: SlimModel,
    *,
    heads: int | None = None,
    intermediate_size: int | None = None,
    init: Init = "importance",
    seed: int = 0,
    gqa: Grouping = "within_groups",
) -> SlimModel:
    """A copy of ``teacher`` with ``heads`` heads and ``intermediate_size`` FFN neurons a layer."""
    if heads is None and intermediate_size is None:
        raise SlimformerError(
            "narrow was given nothing to narrow", "pass heads=, intermediate_size= or both"
        )
    config = Narrow(heads=heads, intermediate_size=intermediate_size, init=init, seed=seed, gqa=gqa)
    student = copy.deepcopy(teacher)
    apply_method(student, config, family="students", progress=False)
    return student


@register_method(Narrow)
def apply_narrow(slim: SlimModel, config: Narrow, context: StageContext) -> None:
    """Plan every layer's cut first (so a bad request changes nothing), then cut."""
    adapter = slim.adapter
    generator = torch.Generator().manual_seed(config.seed)
    neurons, heads = [], []
    if config.intermediate_size is not None:
        neurons = [
            _neurons_to_remove(layer.mlp, config.intermediate_size, config.init, generator)
            for layer in _named(adapter, "mlp")
        ]
    if config.heads is not None:
        heads = [
            _heads_to_remove(layer.index, layer.attention, config, generator)
            for layer in _named(adapter, "attention")
        ]
    for index, gone in enumerate(neurons):
        if gone:
            remove_neurons(adapter, index, gone)
    for index, gone in enumerate(heads):
        if gone:
            remove_heads(adapter, index, gone)
    sync_config(adapter)
    if context.progress:
        sizes = [layer.sizes() for layer in adapter.layers()]
        print(
            f"narrow: heads {[s.num_heads for s in sizes]}, "
            f"FFN widths {[s.intermediate_size for s in sizes]}"
        )


def _named(adapter: Adapter, part: str) -> list:
    layers = adapter.layers()
    if not layers or any(getattr(layer, part) is None for layer in layers):
        raise SlimformerError(
            f"{type(adapter.model).__name__} has no {part} slimformer can name",
            "use a model family slimformer has an adapter for (BERT, Llama, GPT-2)",
        )
    return layers


def _keep(scores: Tensor, count: int, init: Init, generator: torch.Generator) -> Tensor:
    """The ``count`` units to keep, in their original order."""
    if init == "random":
        order = torch.randperm(len(scores), generator=generator)
    else:
        order = torch.argsort(scores, descending=True, stable=True)
    return order[:count].sort().values


def _neurons_to_remove(mlp: MLPParts, size: int, init: Init, generator) -> list[int]:
    width = mlp.intermediate_size
    _check_size("intermediate_size", size, width)
    check_plain(*(p for p in (mlp.up, mlp.gate, mlp.down) if p is not None))
    scores = mlp.up.weight.norm(dim=1) * mlp.down.weight.norm(dim=0)
    if mlp.gate is not None:
        scores = scores * mlp.gate.weight.norm(dim=1)
    kept = set(_keep(scores.detach(), size, init, generator).tolist())
    return [n for n in range(width) if n not in kept]


def _head_scores(att: AttentionParts) -> Tensor:
    """Each query head's value-output path: its key/value head's v rows, its own o columns."""
    dim = att.head_dim
    v = att.v.weight.view(att.num_kv_heads, dim, -1).flatten(1).norm(dim=1)
    o = att.o.weight.view(att.o.weight.shape[0], att.num_heads, dim).transpose(0, 1)
    return (v.repeat_interleave(att.group_size) * o.flatten(1).norm(dim=1)).detach()


def _heads_to_remove(index: int, att: AttentionParts, config: Narrow, generator) -> list[int]:
    _check_size("heads", config.heads, att.num_heads)
    if att.q is att.k:
        raise SlimformerError(
            "this model computes q, k and v in one fused projection, whose heads cannot go",
            "narrow the feed-forward block instead (intermediate_size)",
        )
    check_plain(att.q, att.k, att.v, att.o)
    kept = set(_kept_heads(index, att, config, generator))
    gone = [h for h in range(att.num_heads) if h not in kept]
    check_head_removal(att, gone, where=f"layer {index}: ")
    return gone


def _kept_heads(index: int, att: AttentionParts, config: Narrow, generator) -> list[int]:
    """The strongest heads; under grouped-query attention, so that the groups stay equal."""
    count, scores, group = config.heads, _head_scores(att), att.group_size
    if group == 1:
        return _keep(scores, count, config.init, generator).tolist()
    if config.gqa == "whole_groups":
        if count % group:
            raise _unequal(index, count, f"whole groups of {group} query heads", group)
        groups = _keep(scores.view(-1, group).sum(1), count // group, config.init, generator)
        return [g * group + h for g in groups.tolist() for h in range(group)]
    if count % att.num_kv_heads:
        where = f"the same number from each of {att.num_kv_heads} key/value groups"
        raise _unequal(index, count, where, att.num_kv_heads)
    per_group = count // att.num_kv_heads
    return [
        g * group + int(h)
        for g, group_scores in enumerate(scores.view(-1, group))
        for h in _keep(group_scores, per_group, config.init, generator)
    ]


def _check_size(name: str, size: int, current: int) -> None:
    if not 1 <= size <= current:
        raise SlimformerError(
            f"{name}={size} is not between 1 and the teacher's {current}",
            f"choose a smaller {name} than the teacher's",
        )


def _unequal(index: int, count: int, how: str, step: int) -> SlimformerError:
    return SlimformerError(
        f"layer {index}: {count} heads cannot be kept as {how} (grouped-query attention)",
        f"keep a multiple of {step} heads, or the other `gqa` choice",
    )
