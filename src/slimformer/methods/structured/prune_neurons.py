"""``prune_neurons``: remove the least important MLP neurons, shrinking up, gate and down.

Neurons are scored (``neuron_importance.py``) and the lowest are sliced out
of the weights and the config (``arch/surgery.py``). With ``scope: layer``
every layer loses the same share and the model keeps one MLP width, so the
config alone describes it; ``scope: global`` lets important layers keep more
and records per-layer widths in the saved metadata.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from slimformer.arch.surgery import remove_neurons, sync_config
from slimformer.errors import SlimformerError
from slimformer.methods.base import StageContext, register_method
from slimformer.methods.structured.choose import fraction_count, lowest_global, lowest_per_layer
from slimformer.methods.structured.neuron_importance import neuron_importance
from slimformer.methods.structured.scoring import StructuredSettings, scoring_batches
from slimformer.model import SlimModel


class PruneNeurons(StructuredSettings):
    """Remove MLP neurons by Taylor or activation importance (weights shrink for real)."""

    method = "prune_neurons"

    fraction: float = Field(gt=0, lt=1, description="Share of MLP neurons to remove.")
    importance: Literal["taylor", "activation"] = "taylor"
    scope: Literal["layer", "global"] = Field(
        default="layer", description="The same share from every layer, or the lowest overall."
    )
    multiple_of: PositiveInt = Field(
        default=1, description="Kept width per layer rounded to a multiple (scope layer only)."
    )

    @model_validator(mode="after")
    def _multiple_needs_layer_scope(self) -> PruneNeurons:
        if self.scope == "global" and self.multiple_of > 1:
            raise ValueError("multiple_of needs scope layer (global widths are per layer)")
        return self


@register_method(PruneNeurons)
def apply_prune_neurons(slim: SlimModel, config: PruneNeurons, context: StageContext) -> None:
    mlps = [layer.mlp for layer in slim.adapter.layers()]
    if not mlps or any(mlp is None for mlp in mlps):
        raise SlimformerError(
            f"{slim.name} has no MLP slimformer can name",
            "use a model family slimformer has an adapter for (BERT, Llama)",
        )
    widths = [mlp.intermediate_size for mlp in mlps]
    counts = [_layer_count(width, config) for width in widths]
    scores = neuron_importance(slim, scoring_batches(slim, config, context), config.importance)
    if config.scope == "global":
        plan = lowest_global(scores, fraction_count(config.fraction, sum(widths)))
    else:
        plan = lowest_per_layer(scores, counts)
    for index, neurons in enumerate(plan):
        if neurons:
            remove_neurons(slim.adapter, index, neurons)
    sync_config(slim.adapter)
    if context.progress:
        kept = [layer.mlp.intermediate_size for layer in slim.adapter.layers()]
        print(f"prune_neurons: MLP widths now {kept}")


def _layer_count(width: int, config: PruneNeurons) -> int:
    """Neurons one layer loses: the kept width is rounded to ``multiple_of`` and never zero."""
    step = config.multiple_of
    kept = round((width - fraction_count(config.fraction, width)) / step) * step
    if kept <= 0 or kept >= width:
        raise SlimformerError(
            f"fraction {config.fraction} of {width} neurons with multiple_of {step} keeps "
            f"{max(kept, 0)} of them",
            "choose a fraction and multiple_of that keep some neurons and remove some",
        )
    return width - kept
