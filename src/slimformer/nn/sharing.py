"""One module (or tensor) at several places of a model: find the places, rebuild them.

Cross-layer parameter sharing (ALBERT-style: ``layers[4] is layers[3]``) and
tensors tied beyond Hugging Face's ``_tied_weights_keys`` put one object under
several names. PyTorch's ``named_modules()`` yields such a module once, under
its first name, while ``state_dict()`` lists its tensors under every name.
slimformer goes by the first name (the *canonical* one) everywhere: methods
select and compress a shared module once, the saved folder stores its tensors
once and records every other name as an *alias* of the canonical one, and the
loader makes each alias the same object again (:func:`tie_aliases`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import torch
from torch import nn


def all_names(model: nn.Module) -> dict[str, list[str]]:
    """Every module's names, keyed by its canonical (first) name; the first entry is that name."""
    by_module: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        by_module.setdefault(id(module), []).append(name)
    return {names[0]: names for names in by_module.values()}


def shared_aliases(model: nn.Module, skip: Collection[str] = ()) -> dict[str, str]:
    """Alias name -> canonical name, for every module and state tensor met more than once.

    Only the outermost alias of a shared subtree is listed: when block 4 is
    block 3, ``model.layers.4`` names everything under it. ``skip`` holds
    state-dict keys the model ties itself (Hugging Face's tied keys), which
    ``save_pretrained`` and ``tie_weights`` already handle. A shared module
    with no state of its own to save (a dropout, or only tied weights) is no
    alias: the architecture rebuilds it, and such models keep their old config.
    """
    keys = list(model.state_dict(keep_vars=True))
    aliases = _module_aliases(model, [key for key in keys if key not in skip])
    aliases.update(_tensor_aliases(model, aliases, skip))
    return aliases


def _module_aliases(model: nn.Module, saved_keys: list[str]) -> dict[str, str]:
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        canonical = first.setdefault(id(module), name)
        if canonical == name or is_aliased(name, aliases):
            continue
        if any(key.startswith(f"{name}.") for key in saved_keys):
            aliases[name] = canonical
    return aliases


def _tensor_aliases(
    model: nn.Module, covered: Mapping[str, str], skip: Collection[str]
) -> dict[str, str]:
    """Parameters and buffers shared by modules that are not themselves shared."""
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        if is_aliased(key, covered):
            continue
        canonical = first.setdefault(id(tensor), key)
        if canonical != key and key not in skip:
            aliases[key] = canonical
    return aliases


def is_aliased(name: str, aliases: Collection[str]) -> bool:
    """Whether ``name`` (a module or state-dict key) is an alias or lies under one."""
    parts = name.split(".")
    return any(".".join(parts[:end]) in aliases for end in range(1, len(parts) + 1))


def without_aliases(state: Mapping[str, torch.Tensor], aliases: Collection[str]) -> dict:
    """``state`` less the keys that aliases cover: each shared tensor stored once."""
    return {key: value for key, value in state.items() if not is_aliased(key, aliases)}


def tie_aliases(model: nn.Module, aliases: Mapping[str, str]) -> None:
    """Make every alias the very object its canonical name holds (module, parameter or buffer).

    The loader builds the architecture from its config, with a separate copy
    at every place; after this, changing the shared block changes every place.
    """
    for alias, canonical in aliases.items():
        owner, leaf = _owner(model, alias)
        source, source_leaf = _owner(model, canonical)
        setattr(owner, leaf, getattr(source, source_leaf))


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent, _, leaf = name.rpartition(".")
    return (model.get_submodule(parent) if parent else model), leaf


def places_of(model: nn.Module, module: nn.Module) -> list[tuple[nn.Module, str]]:
    """Every (parent, attribute) at which ``module`` sits in ``model``."""
    return [
        (owner, key)
        for owner in model.modules()
        for key, child in owner._modules.items()
        if child is module
    ]
