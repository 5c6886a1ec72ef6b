"""``drop_layers``: remove whole layers, by block influence, by loss, or by name.

The least important layers (``layer_importance.py``) or the ones listed are
deleted from the stack; ``num_hidden_layers`` and each layer's KV-cache slot
follow (``arch/surgery.py``), so the model reloads through plain transformers.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from slimformer.arch.surgery import remove_layers, sync_config
from slimformer.errors import SlimformerError
from slimformer.methods.base import StageContext, register_method
from slimformer.methods.structured.layer_importance import layer_importance
from slimformer.methods.structured.scoring import StructuredSettings, scoring_batches
from slimformer.model import SlimModel


class DropLayers(StructuredSettings):
    """Remove whole layers: the least important by similarity or loss, or those listed."""

    method = "drop_layers"

    count: PositiveInt | None = Field(default=None, description="Layers to remove.")
    layers: list[int] | None = Field(default=None, description="Exactly these layers (0-based).")
    criterion: Literal["similarity", "loss"] = "similarity"

    @model_validator(mode="after")
    def _one_choice(self) -> DropLayers:
        if (self.count is None) == (self.layers is None):
            raise ValueError("give exactly one of `count` and `layers`")
        return self


@register_method(DropLayers)
def apply_drop_layers(slim: SlimModel, config: DropLayers, context: StageContext) -> None:
    stack = slim.adapter.layer_stack()
    total = 0 if stack is None else len(stack)
    if config.count is not None and config.count >= total:
        raise SlimformerError(
            f"dropping {config.count} of {total} layers leaves no model",
            f"drop at most {total - 1} layers",
        )
    chosen = config.layers
    if chosen is None:
        scores = layer_importance(slim, scoring_batches(slim, config, context), config.criterion)
        chosen = sorted(int(i) for i in scores.argsort(stable=True)[: config.count])
    remove_layers(slim.adapter, chosen)
    sync_config(slim.adapter)
    if context.progress:
        print(f"drop_layers: removed layers {chosen}, {len(stack)} remain")
