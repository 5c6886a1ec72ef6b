"""What a model is fed: token-id inputs, and what a forward signature accepts.

Calibration, latency, memory, warm-up and run-time bucketing all need model
inputs. They ask the model's adapter (``Adapter.example_inputs``,
``Adapter.calibration_inputs``, ``Adapter.sequence_inputs``) instead of
building ``input_ids`` from ``config.vocab_size`` themselves, so a model fed
something else (pixels, embeddings) comes in through another adapter. This
module holds the text case those adapters share.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from slimformer.errors import SlimformerError

#: Token ids below this are often special or unused in real vocabularies
#: (BERT keeps [PAD], [UNK], [CLS], [SEP], [MASK] and [unusedN] there).
FIRST_ORDINARY_TOKEN = 1000

#: Inputs of a text model whose first two dimensions are batch and sequence.
TEXT_SEQUENCE_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def check_shape(batch: int, seq_len: int) -> None:
    """Reject input shapes no model can be fed."""
    if batch < 1 or seq_len < 1:
        raise SlimformerError(
            f"input shape must be positive, got batch={batch}, seq_len={seq_len}",
            "pass batch>=1 and seq_len>=1",
        )


def random_token_inputs(
    vocab_size: int, batch: int, seq_len: int, seed: int = 0, device: str | torch.device = "cpu"
) -> dict[str, Tensor]:
    """Seeded random ``input_ids`` and an all-ones ``attention_mask``.

    Ids start at ``min(1000, vocab_size - 1)`` to stay clear of special tokens,
    and stop before the last id (often end-of-text) when the vocabulary allows.
    The generator is seeded so every model, and every run, sees the same inputs:
    latency measurements are compared across runs.
    """
    if vocab_size < 1:
        raise SlimformerError(f"vocab_size must be positive, got {vocab_size}", "check the config")
    check_shape(batch, seq_len)
    low = min(FIRST_ORDINARY_TOKEN, vocab_size - 1)
    high = max(low + 1, vocab_size - 1)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(low, high, (batch, seq_len), generator=generator, dtype=torch.long)
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones(batch, seq_len, dtype=torch.long, device=device),
    }


def vocab_size_of(model: nn.Module) -> int:
    """``model.config.vocab_size``, or an error that says how to give it."""
    found = getattr(getattr(model, "config", None), "vocab_size", None)
    if not isinstance(found, int):
        raise SlimformerError(
            "cannot tell the model's vocabulary size (no model.config.vocab_size)",
            "pass vocab_size=",
        )
    return found


def accepts(model: nn.Module, name: str) -> bool:
    """Whether ``model``'s forward takes the keyword ``name`` (``use_cache``: also as ``**kw``)."""
    params = inspect.signature(model.forward).parameters
    return name in params or (
        name == "use_cache" and any(p.kind is p.VAR_KEYWORD for p in params.values())
    )


def first_parameter(model: nn.Module) -> str | None:
    """The name of the forward's first positional parameter: where a bare tensor goes."""
    for param in inspect.signature(model.forward).parameters.values():
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            return param.name
    return None


def forward_inputs(model: nn.Module, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``inputs`` plus ``use_cache=False`` where the forward accepts it.

    A cache built during calibration would only be thrown away, and some
    models grow it on every call.
    """
    call = dict(inputs)
    if accepts(model, "use_cache"):
        call.setdefault("use_cache", False)
    return call
