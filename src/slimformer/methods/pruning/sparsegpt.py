"""SparseGPT: second-order pruning that updates the remaining weights to undo the damage.

Calibration windows run through the model one block at a time (the shared
sequential engine, which gathers X^T X); each block's selected linears are
pruned by the OBS solver (see ``sparsegpt_solver``), which zeroes weights
column by column and compensates with the weights not yet visited. Linears
that read one input (q/k/v, gate/up) share one Hessian and one solve.
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveFloat, PositiveInt

from slimformer.methods.base import StageContext, register_method
from slimformer.methods.pruning.calibrated import refined, run_calibrated_pruning
from slimformer.methods.pruning.replace import install_pruned
from slimformer.methods.pruning.settings import CalibratedPruning
from slimformer.methods.pruning.sparsegpt_solver import sparsegpt_prune
from slimformer.model import SlimModel


class SparseGPT(CalibratedPruning):
    """SparseGPT: prune with the OBS weight update, solved block by block from data."""

    method = "sparsegpt"
    family = "pruning"

    damp: PositiveFloat = Field(default=0.01, description="dampening, share of mean diag(H)")
    block_size: PositiveInt = Field(
        default=128, description="columns per lazy batch (and per unstructured mask choice)"
    )


@register_method(SparseGPT)
def apply_sparsegpt(slim: SlimModel, config: SparseGPT, context: StageContext) -> None:
    from slimformer.calibration.engine import Collect

    nm = config.nm()

    def prune_block(block, names: list[str], sparsity: float) -> None:
        for group in block.shared_input_groups(names):
            linears = [block.linears[name] for name in group]
            rows = [linear.out_features for linear in linears]
            dense = torch.cat([linear.weight.detach() for linear in linears])
            hessian = block.stats[group[0]].hessian()
            result = sparsegpt_prune(
                dense,
                hessian,
                sparsity,
                nm,
                row_splits=rows,
                damp=config.damp,
                block_size=config.block_size,
                name=" + ".join(group),
            )
            weight = refined(config, dense, hessian, result.keep, result.weight, config.damp)
            parts = zip(weight.split(rows), result.keep.split(rows), strict=True)
            for name, linear, (part, part_keep) in zip(group, linears, parts, strict=True):
                install_pruned(slim, name, linear, part, part_keep, config.pattern)

    run_calibrated_pruning(slim, config, context, prune_block, Collect(xtx=True))
