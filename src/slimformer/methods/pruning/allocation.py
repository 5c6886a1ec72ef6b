"""Per-block sparsity under a global target: OWL, outlier-weighted layerwise sparsity.

OWL (Yin et al., 2023) observes that LLM blocks differ in how many "outlier"
weights they hold, weights whose Wanda score |W| * ‖x‖ is far above the
block's mean, and that those weights matter most. Blocks with a higher
outlier ratio therefore keep more weights: the ratios are spread linearly
over ``[target - lambda, target + lambda]`` (inverted: more outliers, lower
sparsity), then shifted so that the parameter-weighted mean sparsity is the
target again. Ratios come from the dense model, so they cost one extra
calibration pass before pruning starts.
"""

from __future__ import annotations

from collections.abc import Collection

import torch

from slimformer.calibration.run import calibrate
from slimformer.calibration.spec import CalibrationSpec
from slimformer.calibration.stats import Collect
from slimformer.methods.base import StageContext
from slimformer.model import SlimModel


def outlier_ratios(
    slim: SlimModel,
    windows: torch.Tensor,
    targets: Collection[str],
    threshold: float,
    context: StageContext,
    spec: CalibrationSpec,
) -> dict[int, tuple[float, int]]:
    """Per block index: the share of its targets' Wanda scores above ``threshold`` x their mean,
    and how many weights that block holds."""
    ratios: dict[int, tuple[float, int]] = {}

    def process(block) -> None:
        scores = [
            (linear.weight.detach().abs().float() * block.stats[name].l2_norm()).reshape(-1)
            for name, linear in block.linears.items()
            if name in targets
        ]
        if scores:
            flat = torch.cat(scores)
            share = (flat > threshold * flat.mean()).float().mean().item()
            ratios[block.index] = (share, flat.numel())

    calibrate(slim, spec, process, context, collect=Collect(sq_norm=True), windows=windows)
    return ratios


def owl_sparsities(
    ratios: dict[int, tuple[float, int]], target: float, spread: float
) -> dict[int, float]:
    """Block sparsities from outlier ratios; weighted mean ``target`` (before clipping)."""
    if not ratios:
        return {}
    shares = torch.tensor([share for share, _ in ratios.values()], dtype=torch.float64)
    sizes = torch.tensor([size for _, size in ratios.values()], dtype=torch.float64)
    span = shares.max() - shares.min()
    scaled = (shares - shares.min()) / span * 2 * spread if span > 0 else torch.zeros_like(shares)
    sparsity = -scaled  # more outliers: keep more
    sparsity += target - (sparsity * sizes).sum() / sizes.sum()
    sparsity = sparsity.clamp(0.0, 0.99)
    return {index: float(s) for index, s in zip(ratios, sparsity, strict=True)}
