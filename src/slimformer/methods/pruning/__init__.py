"""Pruning: weights set to zero (unstructured or N:M) and stored compactly."""

from __future__ import annotations

from slimformer.methods.apply import apply_method
from slimformer.methods.base import MethodConfig
from slimformer.methods.pruning.magnitude import Magnitude
from slimformer.methods.pruning.sparsegpt import SparseGPT
from slimformer.methods.pruning.wanda import Wanda


def prune_(model, config: MethodConfig, **context):
    """Prune ``model`` in place with ``config``; returns the model for chaining.

    ``calibration=`` takes token windows (``slimformer.calibration_windows``) or a
    dataset name for methods that learn from data; ``progress=False`` hides bars.
    Pruned layers become :class:`slimformer.nn.SparseLinear`, which saves only the
    kept weights and their positions.
    """
    return apply_method(model, config, family="pruning", **context)


__all__ = ["Magnitude", "SparseGPT", "Wanda", "prune_"]
