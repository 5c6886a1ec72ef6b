"""Running one method on a model: the code behind every public verb and recipe stage."""

from __future__ import annotations

from typing import Any

from torch import nn

from slimformer.errors import SlimformerError
from slimformer.methods.base import MethodConfig, StageContext, entry_of
from slimformer.model import SlimModel, task_of
from slimformer.nn.finite import check_model_finite
from slimformer.nn.registry import compressed_modules


def as_slim(model: SlimModel | nn.Module, tokenizer: Any = None) -> SlimModel:
    """Wrap a bare module so methods see the same object as from ``slimformer.load``."""
    if isinstance(model, SlimModel):
        return model
    if not isinstance(model, nn.Module):
        raise SlimformerError(
            f"expected a torch.nn.Module or a slimformer model, got {type(model).__name__}",
            "pass slimformer.load(...) or a Hugging Face model",
        )
    # The record of what ran lives on the module, so a later save() still finds it.
    compression = model.__dict__.setdefault("_slimformer_compression", {})
    return SlimModel(
        model=model,
        tokenizer=tokenizer,
        name=type(model).__name__,
        source="memory",
        task=task_of(model),
        compression=compression,
    )


def apply_method(
    model: SlimModel | nn.Module,
    config: MethodConfig,
    family: str | None = None,
    context: StageContext | None = None,
    *,
    check_finite: bool = True,
    **context_fields: Any,
) -> SlimModel | nn.Module:
    """Apply ``config`` to ``model`` in place; the family check keeps verbs honest.

    A model holding NaN or inf is refused before any work (it would compress
    into a model that scores like chance, or save an inf scale);
    ``check_finite=False`` is for callers that checked it already (a recipe
    checks once before its first stage, so a later stage is not blamed on the input).
    """
    entry = entry_of(config)
    if family is not None and entry.family != family:
        raise SlimformerError(
            f"{config.method} is a {entry.family} method, not {family}",
            f"use the {entry.family} verb or a recipe stage",
        )
    slim = as_slim(model)
    if check_finite:
        check_model_finite(slim.model)
    entry.apply(slim, config, context or StageContext(**context_fields))
    _untie_compressed_head(slim.model)
    slim.refresh_adapter()
    slim.compression.setdefault("methods", []).append(config.to_dict())
    return model


def _untie_compressed_head(model: nn.Module) -> None:
    """A compressed output head no longer shares the input embedding: say so in the config.

    Otherwise loading the saved model re-ties the head to the float embedding
    (``tie_weights``) and the compressed head's weights are overwritten.
    """
    config = getattr(model, "config", None)
    if not getattr(config, "tie_word_embeddings", False):
        return
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if head is not None and head in compressed_modules(model).values():
        config.tie_word_embeddings = False
