"""Compressed modules by kind, so one loader rebuilds every saved format.

Each compressed module class has a ``kind`` string and can describe itself
(``spec``) and be rebuilt empty from that description (``from_spec``); the
saved config lists the kind and spec of every replaced module, and loading
swaps in empty modules of those kinds before the state dict is read. This is
the ``quant_method`` dispatch of transformers, generalised to every family.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from slimformer.errors import SlimformerError
from slimformer.nn.sharing import places_of


@runtime_checkable
class CompressedModule(Protocol):
    kind: str

    def spec(self) -> dict[str, Any]: ...

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> nn.Module: ...

    def logical_weights(self) -> list: ...


_KINDS: dict[str, type] = {}


def register_module(cls: type) -> type:
    """Make a compressed module class loadable by its ``kind``."""
    _KINDS[cls.kind] = cls
    return cls


def module_class(kind: str) -> type:
    if kind not in _KINDS:
        raise SlimformerError(
            f"the saved model uses a module kind {kind!r} this slimformer does not know",
            "upgrade slimformer to the version that saved it",
        )
    return _KINDS[kind]


def compressed_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every compressed module in ``model`` by qualified name, each module once.

    A module shared by several places is listed once, under its first
    (canonical) name; ``slimformer.nn.sharing.all_names`` gives its other names
    and the saved config records them as aliases.
    """
    return {
        name: module
        for name, module in model.named_modules()
        if getattr(module, "kind", None) in _KINDS
    }


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule called ``name`` was, and at every other place it sits.

    A module shared by several places (one linear in two tied blocks) gets one
    replacement object at all of them, so the model stays shared and the
    module is compressed once. The places are found before ``new`` goes in:
    a wrapper that holds the old module (``InputScaled``) keeps it.
    """
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = parent._modules.get(child)
    places = places_of(model, old) if old is not None else []
    setattr(parent, child, new)
    for owner, key in places:
        setattr(owner, key, new)


_FLOAT_WEIGHTS: contextvars.ContextVar[dict[int, torch.Tensor] | None] = contextvars.ContextVar(
    "slimformer_float_weights", default=None
)


@contextlib.contextmanager
def reuse_float_weights() -> Iterator[None]:
    """Inside the block, a compressed module unpacks its float weight once, not per call.

    Calibration runs one block over dozens of windows; unpacking packed codes on
    every call costs as much as the block itself. The cache lives only for the
    block (one block's float weights), so a compressed model stays small otherwise.
    """
    token = _FLOAT_WEIGHTS.set({})
    try:
        yield
    finally:
        _FLOAT_WEIGHTS.reset(token)


def float_weights_cached() -> bool:
    """Whether a :func:`reuse_float_weights` block cache is active (calibration passes)."""
    return _FLOAT_WEIGHTS.get() is not None


def float_weight(
    module: nn.Module, compute: Callable[[], torch.Tensor], dtype: torch.dtype | None = None
) -> torch.Tensor:
    """``compute()`` in ``dtype``, or its cached value inside :func:`reuse_float_weights`.

    Caching the weight in the dtype the product runs in (bf16 under autocast)
    also saves the cast that would otherwise happen on every call.
    """
    cache = _FLOAT_WEIGHTS.get()
    if cache is None:
        weight = compute()
        return weight if dtype is None else weight.to(dtype)
    key = (id(module), dtype)
    if key not in cache:
        weight = compute()
        cache[key] = weight if dtype is None else weight.to(dtype)
    return cache[key]
