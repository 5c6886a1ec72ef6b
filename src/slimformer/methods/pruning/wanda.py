"""Wanda: prune by |weight| x input activation norm, compared within each output row.

Wanda (Sun et al., 2023) scores weight ``W_ij`` by ``|W_ij| * ‖X_j‖₂``, the
size of its contribution to the output over the calibration tokens, and
prunes the lowest scores of each output row (or of each N:M group of a
row). No weight update, no Hessian: one statistics pass per block, nearly
as cheap as magnitude pruning and far better on LLMs, whose few large
activation channels make small weights on them matter.
"""

from __future__ import annotations

import torch

from slimformer.methods.base import StageContext, register_method
from slimformer.methods.pruning.calibrated import run_calibrated_pruning
from slimformer.methods.pruning.masks import keep_within_rows
from slimformer.methods.pruning.replace import install_pruned
from slimformer.methods.pruning.settings import CalibratedPruning
from slimformer.model import SlimModel


class Wanda(CalibratedPruning):
    """Wanda: prune the lowest |W| x activation-norm scores of each output row, from data."""

    method = "wanda"
    family = "pruning"


def wanda_scores(weight: torch.Tensor, input_norm: torch.Tensor) -> torch.Tensor:
    """``|W_ij| * ‖x_j‖₂`` as float32 ``[out, in]`` (``input_norm``: ``[in]``, over all tokens)."""
    return weight.detach().abs().float() * input_norm.float()


@register_method(Wanda)
def apply_wanda(slim: SlimModel, config: Wanda, context: StageContext) -> None:
    from slimformer.calibrate import Collect

    nm = config.nm()

    def prune_block(block, names: list[str], sparsity: float) -> None:
        for name in names:
            linear = block.linears[name]
            score = wanda_scores(linear.weight, block.stats[name].l2_norm())
            keep = keep_within_rows(score, sparsity, nm)
            install_pruned(slim, name, linear, linear.weight, keep, config.pattern)

    run_calibrated_pruning(slim, config, context, prune_block, Collect(sq_norm=True))
