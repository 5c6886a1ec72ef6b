"""``prune_heads``: remove the least important attention heads, shrinking q, k, v and o.

Heads are scored (``head_importance.py``) and the lowest are sliced out of the
weights and the config (``arch/surgery.py``). Under grouped-query attention
(Llama-family models with fewer key/value heads than query heads) the
removed heads must leave equal groups: ``gqa: within_groups`` (default) takes
the same number of query heads out of every group and keeps every key/value
head, ``gqa: whole_groups`` removes whole key/value heads with all their
query heads (group importance = the sum of its heads').
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, PositiveInt, model_validator

from slimformer.arch.base import AttentionParts
from slimformer.arch.surgery import check_head_removal, remove_heads, sync_config
from slimformer.errors import SlimformerError
from slimformer.methods.base import StageContext, register_method
from slimformer.methods.structured.choose import fraction_count, lowest_global, lowest_per_layer
from slimformer.methods.structured.head_importance import head_importance
from slimformer.methods.structured.scoring import StructuredSettings, scoring_batches
from slimformer.model import SlimModel


class PruneHeads(StructuredSettings):
    """Remove attention heads by gradient or activation importance (weights shrink for real)."""

    method = "prune_heads"

    fraction: float | None = Field(default=None, gt=0, lt=1, description="Share of heads.")
    count: PositiveInt | None = Field(
        default=None, description="Heads to remove: per layer (scope layer) or in all."
    )
    importance: Literal["gradient", "activation"] = "gradient"
    scope: Literal["layer", "global"] = Field(
        default="layer", description="The same number from every layer, or the lowest overall."
    )
    gqa: Literal["within_groups", "whole_groups"] = "within_groups"

    @model_validator(mode="after")
    def _one_amount(self) -> PruneHeads:
        if (self.fraction is None) == (self.count is None):
            raise ValueError("give exactly one of `fraction` and `count`")
        return self


@register_method(PruneHeads)
def apply_prune_heads(slim: SlimModel, config: PruneHeads, context: StageContext) -> None:
    atts = [layer.attention for layer in slim.adapter.layers()]
    if not atts or any(att is None for att in atts):
        raise SlimformerError(
            f"{slim.name} has no attention heads slimformer can name",
            "use a model family slimformer has an adapter for (BERT, Llama)",
        )
    units = [_unit_size(att, config) for att in atts]  # heads per unit of choice
    _plan(atts, [torch.zeros(att.num_heads) for att in atts], units, config)  # fail before scoring
    scores = head_importance(slim, scoring_batches(slim, config, context), config.importance)
    plan = _plan(atts, scores, units, config)
    for index, (att, heads) in enumerate(zip(atts, plan, strict=True)):
        check_head_removal(att, heads, where=f"layer {index}: ")  # all checked before any cut
    for index, heads in enumerate(plan):
        if heads:
            remove_heads(slim.adapter, index, heads)
    sync_config(slim.adapter)
    if context.progress:
        heads = [layer.attention.num_heads for layer in slim.adapter.layers()]
        print(f"prune_heads: heads per layer now {heads}")


def _unit_size(att: AttentionParts, config: PruneHeads) -> int:
    """1: heads are chosen one by one; group size: whole key/value groups are chosen."""
    return att.group_size if config.gqa == "whole_groups" else 1


def _plan(atts, scores, units, config: PruneHeads) -> list[list[int]]:
    if config.scope == "global":
        if any(att.group_size > 1 for att in atts) and config.gqa == "within_groups":
            raise SlimformerError(
                "scope global cannot keep grouped-query groups equal with gqa within_groups",
                "use scope layer, or gqa whole_groups",
            )
        grouped = [score.view(-1, unit).sum(1) for score, unit in zip(scores, units, strict=True)]
        total = config.count or fraction_count(config.fraction, sum(att.num_heads for att in atts))
        chosen = lowest_global(grouped, total // units[0])  # units of one size: heads or groups
        return [_expand(c, u) for c, u in zip(chosen, units, strict=True)]
    return [
        _layer_plan(i, att, score, unit, config)
        for i, (att, score, unit) in enumerate(zip(atts, scores, units, strict=True))
    ]


def _layer_plan(index, att: AttentionParts, score, unit: int, config: PruneHeads) -> list[int]:
    # Within groups, heads go in multiples of the key/value head count (one from each group).
    step = unit if unit > 1 else att.num_kv_heads if att.group_size > 1 else 1
    count = config.count or fraction_count(config.fraction, att.num_heads, step)
    if count % step:
        raise SlimformerError(
            f"layer {index}: removing {count} of {att.num_heads} heads breaks grouped-query "
            f"attention ({att.num_kv_heads} key/value heads)",
            f"remove a multiple of {step} heads per layer",
        )
    if count == 0:
        raise SlimformerError(
            f"layer {index}: fraction {config.fraction} of {att.num_heads} heads removes none",
            f"raise `fraction` (heads go in multiples of {step})",
        )
    if count >= att.num_heads:
        raise SlimformerError(
            f"layer {index}: removing {count} of {att.num_heads} heads leaves no attention",
            "keep at least one head in every layer (drop_layers removes whole layers)",
        )
    if unit > 1:
        grouped = score.view(-1, unit).sum(1)
        return _expand(lowest_per_layer([grouped], [count // unit])[0], unit)
    if att.group_size > 1:  # the same number of lowest heads from every group
        per_group = score.view(att.num_kv_heads, att.group_size)
        chosen = lowest_per_layer(list(per_group), [count // step] * att.num_kv_heads)
        return sorted(g * att.group_size + h for g, heads in enumerate(chosen) for h in heads)
    return lowest_per_layer([score], [count])[0]


def _expand(groups: list[int], unit: int) -> list[int]:
    return [g * unit + h for g in groups for h in range(unit)]
