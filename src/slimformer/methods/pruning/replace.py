"""Putting a pruned weight into the model: a SparseLinear where the nn.Linear was."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from slimformer.methods.pruning.masks import keep_lowest_pruned, keep_n_of_m, pruned_count
from slimformer.methods.pruning.settings import NMPattern
from slimformer.model import SlimModel
from slimformer.nn import replace_module
from slimformer.nn.sparse_linear import SparseLinear


def install_pruned(
    slim: SlimModel,
    name: str,
    linear: nn.Linear,
    weight: torch.Tensor,
    keep: torch.Tensor,
    pattern: str,
) -> SparseLinear:
    """Replace the layer ``name`` by a SparseLinear of ``weight`` where ``keep`` is set.

    ``weight`` is cast back to the layer's dtype (solvers work in float32), so
    the sparse layer's float format is the model's.
    """
    weight = weight.to(linear.weight.dtype)
    module = SparseLinear.from_pruned(weight, keep, linear.bias, pattern)
    replace_module(slim.model, name, module)
    return module


def magnitude_keep(weight: torch.Tensor, sparsity: float, nm: NMPattern | None) -> torch.Tensor:
    """Keep-mask of the largest |w|: the layer's share, or N of every M in each row."""
    score = weight.detach().abs()
    if nm is not None:
        return keep_n_of_m(score, nm)
    return keep_lowest_pruned(score, pruned_count(score.numel(), sparsity))


def prune_unvisited(
    slim: SlimModel, names: Iterable[str], sparsity: float, nm: NMPattern | None, pattern: str
) -> list[str]:
    """Magnitude-prune the named layers that are still float ``nn.Linear``; returns their names.

    Calibrated methods prune what the sequential engine visits: the linears
    inside the stack of blocks. A selected layer outside it (a head, say) has
    no calibration statistics, so it falls back to magnitude rather than
    being left dense without a word.
    """
    done = []
    for name in names:
        module = slim.model.get_submodule(name)
        if type(module) is nn.Linear:
            keep = magnitude_keep(module.weight, sparsity, nm)
            install_pruned(slim, name, module, module.weight, keep, pattern)
            done.append(name)
    return done
