"""Structured pruning: heads, MLP neurons and whole layers removed from the weights.

Unlike unstructured sparsity, the matrices get smaller, so the model has
fewer parameters and FLOPs on any kernel. Each method scores parts on data
(``scoring.py``), chooses the lowest (``choose.py``) and cuts them through
the architecture adapters (``slimformer/arch/surgery.py``)::

    slimformer.prune_structure_(slim, slimformer.PruneHeads(fraction=1/3, dataset="intent"))
"""

from __future__ import annotations

from slimformer.methods.apply import apply_method
from slimformer.methods.base import MethodConfig
from slimformer.methods.structured.drop_layers import DropLayers
from slimformer.methods.structured.prune_heads import PruneHeads
from slimformer.methods.structured.prune_neurons import PruneNeurons


def prune_structure_(model, config: MethodConfig, **context):
    """Remove heads, neurons or layers of ``model`` in place; returns the model for chaining.

    ``calibration=`` takes token windows (or a dataset name) for models scored
    on text; classifiers are scored on the labelled data named in the config.
    """
    if not isinstance(config, (PruneHeads, PruneNeurons, DropLayers)):
        from slimformer.errors import SlimformerError

        raise SlimformerError(
            f"{config.method} is not a structured pruning method",
            "pass PruneHeads, PruneNeurons or DropLayers",
        )
    return apply_method(model, config, family="pruning", **context)


__all__ = ["DropLayers", "PruneHeads", "PruneNeurons", "prune_structure_"]
