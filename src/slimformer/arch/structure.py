"""Per-layer sizes in saved metadata, and shapes rebuilt from them before loading.

A config describes one size for every layer. After structured pruning the
layers may differ (eight heads here, six there), or a family may derive a
size from a changed count (BERT's head size is hidden size / heads), so the
config alone no longer rebuilds the model. The saved ``slimformer`` section
then carries ``structure``: every layer's sizes and the config values under
which the model class builds at all; ``slimformer.load`` builds, cuts each
layer to its size, and only then reads the weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from torch import nn

from slimformer.arch import get_adapter
from slimformer.arch.base import LayerSizes
from slimformer.arch.surgery import resize_layer
from slimformer.errors import SlimformerError


def saved_structure(model: nn.Module) -> dict[str, Any] | None:
    """The ``structure`` entry for ``model``, None when its config alone rebuilds it."""
    adapter = get_adapter(model)
    built = adapter.config_sizes()
    sizes = [layer.sizes() for layer in adapter.layers()]
    if built is None or not sizes or any(s is None for s in sizes):
        return None
    if all(s == built for s in sizes):
        return None
    return {
        "layers": [asdict(s) for s in sizes],
        "construct": adapter.construction_overrides(),
    }


@contextmanager
def constructing(config: Any, structure: dict[str, Any] | None) -> Iterator[None]:
    """Hold the config at values the model class builds with, for the time of building."""
    overrides = (structure or {}).get("construct", {})
    saved = {key: getattr(config, key) for key in overrides}
    for key, value in overrides.items():
        setattr(config, key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            setattr(config, key, value)


def rebuild_structure(model: nn.Module, structure: dict[str, Any]) -> None:
    """Cut every layer of a freshly built ``model`` to its saved sizes (weights uninitialised)."""
    adapter = get_adapter(model)
    layers = adapter.layers()
    saved = structure.get("layers", [])
    if len(saved) != len(layers):
        raise SlimformerError(
            f"the saved structure has {len(saved)} layers, the config builds {len(layers)}",
            "the folder is damaged or was edited; save the model again",
        )
    for layer, sizes in zip(layers, saved, strict=True):
        resize_layer(adapter, layer, LayerSizes(**sizes))
