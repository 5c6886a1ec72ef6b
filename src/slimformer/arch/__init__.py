"""Architecture adapters: one per model family, plus the generic fallback.

New families come in through :func:`register_adapter`; methods call
:func:`get_adapter` and never test model classes themselves.
"""

from __future__ import annotations

from torch import nn

from slimformer.arch.base import (
    PARTS,
    Adapter,
    AttentionParts,
    LayerParts,
    MLPParts,
    OutputRows,
    ScaleGroup,
)
from slimformer.arch.bert import BertAdapter
from slimformer.arch.gpt2 import GPT2Adapter
from slimformer.arch.llama import LlamaAdapter

_ADAPTERS: list[type[Adapter]] = [BertAdapter, GPT2Adapter, LlamaAdapter]


def register_adapter(adapter: type[Adapter]) -> type[Adapter]:
    """Add a family adapter; later registrations are tried first."""
    _ADAPTERS.insert(0, adapter)
    return adapter


def get_adapter(model: nn.Module) -> Adapter:
    """The adapter of the first family that claims ``model``, else the generic one."""
    for adapter in _ADAPTERS:
        if adapter.matches(model):
            return adapter(model)
    return Adapter(model)


__all__ = [
    "PARTS",
    "Adapter",
    "AttentionParts",
    "BertAdapter",
    "GPT2Adapter",
    "LayerParts",
    "LlamaAdapter",
    "MLPParts",
    "OutputRows",
    "ScaleGroup",
    "get_adapter",
    "register_adapter",
]
