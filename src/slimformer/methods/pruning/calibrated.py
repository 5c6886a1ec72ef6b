"""The loop Wanda and SparseGPT share: calibration windows, block sparsities, the engine.

A method supplies only how to prune one block's selected linears at a given
sparsity; this runs the sequential engine (each block pruned, its pruned
outputs feeding the next, so later blocks adapt to earlier pruning),
chooses each block's sparsity (uniform, or OWL), and magnitude-prunes
selected layers the engine never visits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from slimformer.calibration.run import calibrate, stage_windows
from slimformer.methods.base import StageContext
from slimformer.methods.pruning.admm import admm_refine
from slimformer.methods.pruning.allocation import outlier_ratios, owl_sparsities
from slimformer.methods.pruning.replace import prune_unvisited
from slimformer.methods.pruning.settings import CalibratedPruning
from slimformer.model import SlimModel

#: prune_block(block, names of its selected linears, sparsity)
PruneBlock = Callable[[object, list[str], float], None]


def run_calibrated_pruning(
    slim: SlimModel,
    config: CalibratedPruning,
    context: StageContext,
    prune_block: PruneBlock,
    collect,
) -> None:
    """Prune every selected linear of ``slim`` block by block."""
    # Names only: holding the modules would keep every replaced float weight alive to the end.
    targets = dict.fromkeys(config.checked_targets(slim))
    windows = stage_windows(slim, config.calibration, context)
    target = config.target()
    sparsities: dict[int, float] = {}
    if config.allocation == "owl":
        ratios = outlier_ratios(
            slim, windows, targets, config.owl_threshold, context, config.calibration
        )
        sparsities = owl_sparsities(ratios, target, config.owl_lambda)

    def process(block) -> None:
        names = [name for name in block.linears if name in targets]
        if names:
            prune_block(block, names, sparsities.get(block.index, target))

    calibrate(
        slim,
        config.calibration,
        process,
        context,
        collect=collect,
        true_sequential=config.true_sequential,
        windows=windows,
    )
    prune_unvisited(slim, targets, target, config.nm(), config.pattern)


def refined(
    config: CalibratedPruning,
    dense: torch.Tensor,
    hessian: torch.Tensor | None,
    keep: torch.Tensor,
    weight: torch.Tensor,
    damp: float = 0.01,
) -> torch.Tensor:
    """``weight`` as the method left it, or re-solved for its mask when ``config.refine`` asks.

    ``hessian`` may be None when not refining: Wanda gathers X^T X only to refine.
    """
    if config.refine == "none":
        return weight
    return admm_refine(
        dense,
        hessian,
        keep,
        weight,
        iterations=config.refine_iterations,
        rho=config.refine_rho,
        damp=damp,
    )
