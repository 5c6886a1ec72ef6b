"""Wanda: prune by |weight| x input activation norm, compared within each output row.

Wanda (Sun et al., 2023) scores weight ``W_ij`` by ``|W_ij| * ‖X_j‖₂``, the
size of its contribution to the output over the calibration tokens, and
prunes the lowest scores of each output row (or of each N:M group of a
row). No weight update, no Hessian: one statistics pass per block, nearly
as cheap as magnitude pruning and far better on LLMs, whose few large
activation channels make small weights on them matter. With ``refine:
admm`` the kept weights are then re-solved for Wanda's mask (see
:mod:`slimformer.methods.pruning.admm`), which needs X^T X as well.
"""

from __future__ import annotations

import torch

from slimformer.methods.base import StageContext, register_method
from slimformer.methods.pruning.calibrated import refined, run_calibrated_pruning
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
    from slimformer.calibration.engine import Collect

    nm = config.nm()

    def prune_block(block, names: list[str], sparsity: float) -> None:
        for group in block.shared_input_groups(names):
            linears = [block.linears[name] for name in group]
            rows = [linear.out_features for linear in linears]
            stats = block.stats[group[0]]
            norm = stats.l2_norm()
            keep = torch.cat(
                [keep_within_rows(wanda_scores(lin.weight, norm), sparsity, nm) for lin in linears]
            )
            dense = torch.cat([linear.weight.detach() for linear in linears])
            hessian = stats.hessian() if config.refine != "none" else None
            weight = refined(config, dense, hessian, keep, dense)
            parts = zip(weight.split(rows), keep.split(rows), strict=True)
            for name, linear, (part, part_keep) in zip(group, linears, parts, strict=True):
                install_pruned(slim, name, linear, part, part_keep, config.pattern)

    collect = Collect(sq_norm=True, xtx=config.refine != "none")
    run_calibrated_pruning(slim, config, context, prune_block, collect)
