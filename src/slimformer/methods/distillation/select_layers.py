"""Students by depth: keep some of the teacher's layers, weights copied exactly (DistilBERT).

The student is a copy of the teacher with the layer stack (found through
the architecture adapter) cut down to the chosen layers; embeddings, norms
and the head come along unchanged. The config says the new depth, so the
saved student reloads as a plain model of its family.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch import nn

from slimformer.errors import SlimformerError
from slimformer.model import SlimModel
from slimformer.nn.registry import replace_module


def choose_layers(n_layers: int, layers: Sequence[int] | None, every: int | None) -> list[int]:
    """The 0-based layers to keep: ``layers`` as given, or every ``every``-th from the first."""
    if (layers is None) == (every is None):
        raise SlimformerError(
            "give either the layers to keep or every (keep one layer in every N)",
            "for example layers=[0, 2, 4] or every=2",
        )
    chosen = list(range(0, n_layers, every)) if every is not None else list(layers)
    if not chosen:
        raise SlimformerError("no layers were chosen for the student", "keep at least one layer")
    bad = [i for i in chosen if not 0 <= i < n_layers]
    if bad:
        raise SlimformerError(
            f"layer {bad[0]} does not exist: the model has layers 0..{n_layers - 1}",
            "choose layers inside that range",
        )
    if len(set(chosen)) != len(chosen):
        raise SlimformerError(f"layers {chosen} repeat a layer", "list each layer once")
    return sorted(chosen)


def select_layers(
    teacher: SlimModel, layers: Sequence[int] | None = None, *, every: int | None = None
) -> SlimModel:
    """A new model made of the teacher's ``layers`` (0-based), each copied exactly."""
    keep = choose_layers(len(teacher.adapter.layers()), layers, every)
    student = copy.deepcopy(teacher)
    cut_layers(student, keep)
    return student


def cut_layers(slim: SlimModel, keep: list[int]) -> None:
    """Keep only layers ``keep`` of ``slim`` in place, renumbered 0..len(keep)-1."""
    stack = slim.adapter.layer_stack()
    name = next(n for n, m in slim.model.named_modules() if m is stack)
    replace_module(slim.model, name, nn.ModuleList([stack[i] for i in keep]))
    for new_index, block in enumerate(slim.model.get_submodule(name)):
        for module in block.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = new_index  # the key/value cache is indexed by it
    config = slim.model.config
    old = config.num_hidden_layers
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == old:
        config.layer_types = [layer_types[i] for i in keep]
    config.num_hidden_layers = len(keep)
    slim.refresh_adapter()
