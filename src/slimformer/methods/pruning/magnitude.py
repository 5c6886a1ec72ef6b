"""Magnitude pruning: the weights smallest in absolute value are set to zero, no data needed.

The baseline every pruning method is measured against. ``scope: layer``
prunes the same share of every selected layer; ``scope: global`` sets one
threshold for all of them, so layers with many small weights lose more
(layers whose weights are scaled differently, which is common in LLMs, then
lose very unequal shares: that is why global magnitude is rarely better).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn
from tqdm.auto import tqdm

from slimformer.methods.base import StageContext, register_method
from slimformer.methods.pruning.masks import pruned_count
from slimformer.methods.pruning.replace import install_pruned, magnitude_keep
from slimformer.methods.pruning.settings import PruningSettings
from slimformer.model import SlimModel


class Magnitude(PruningSettings):
    """Magnitude pruning: zero the smallest |w| per layer or under one global threshold."""

    method = "magnitude"
    family = "pruning"

    scope: Literal["layer", "global"] = Field(
        default="layer",
        description="'layer': each layer loses the target share; 'global': one threshold for all.",
    )

    @model_validator(mode="after")
    def _global_needs_unstructured(self) -> Magnitude:
        if self.scope == "global" and self.nm() is not None:
            raise ValueError(
                f"scope 'global' compares weights across layers, pattern {self.pattern} "
                "within groups of a row; use scope 'layer' with N:M patterns"
            )
        return self


def global_keep_masks(layers: dict[str, nn.Linear], sparsity: float) -> dict[str, torch.Tensor]:
    """Keep-masks pruning exactly the target share of all weights under one |w| threshold.

    Weights equal to the threshold are pruned in layer order until the count
    is exact, so ties never overshoot or undershoot the target.
    """
    magnitudes = {name: linear.weight.detach().abs().float() for name, linear in layers.items()}
    total = sum(m.numel() for m in magnitudes.values())
    count = pruned_count(total, sparsity)
    if count == 0:
        return {name: torch.ones_like(m, dtype=torch.bool) for name, m in magnitudes.items()}
    flat = torch.cat([m.reshape(-1) for m in magnitudes.values()])
    threshold = flat.kthvalue(count).values
    remaining = count - int((flat < threshold).sum())
    del flat
    masks = {}
    for name, magnitude in magnitudes.items():
        keep = magnitude >= threshold
        ties = (magnitude == threshold).reshape(-1).nonzero().squeeze(1)[:remaining]
        keep.view(-1)[ties] = False
        remaining -= ties.numel()
        masks[name] = keep
    return masks


@register_method(Magnitude)
def apply_magnitude(slim: SlimModel, config: Magnitude, context: StageContext) -> None:
    layers = config.checked_targets(slim)
    nm, sparsity = config.nm(), config.target()
    masks = global_keep_masks(layers, sparsity) if config.scope == "global" else None
    progress = tqdm(layers.items(), desc="magnitude", unit="layer", disable=not context.progress)
    for name, linear in progress:
        keep = masks.pop(name) if masks else magnitude_keep(linear.weight, sparsity, nm)
        install_pruned(slim, name, linear, linear.weight, keep, config.pattern)
