"""SmoothQuant: move activation outliers into the weights, then quantize both to int8.

A few input channels of a transformer's linears carry values tens of times
larger than the rest, so one int8 step for the whole activation wastes most
codes on them. Weights have no such outliers. SmoothQuant (Xiao et al., 2023)
divides each input channel j by

    s_j = max|X_j|^alpha / max|W_:,j|^(1 - alpha)

and multiplies the weight column by it, which leaves ``W @ x`` unchanged and
splits the difficulty between the two; ``alpha`` is the share given to the
weights (0.5 for most models). The division is folded into the producer of
the input (a norm or a linear) where one exists, and otherwise applied by an
``InputScaled`` wrapper (see ``folding``). The rescaled linears are then
quantized as in naive W8A8, with the static range of each read off the
calibration maxima divided by ``s``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field
from torch import Tensor, nn

from slimformer.methods.base import StageContext, register_method
from slimformer.methods.quantization.folding import apply_input_scale
from slimformer.methods.quantization.w8a8 import (
    Activations,
    W8A8Settings,
    calibrated_quantization,
    quantized_linear,
)
from slimformer.model import SlimModel
from slimformer.nn import InputScaled, replace_module

if TYPE_CHECKING:
    from slimformer.calibration.engine import BlockContext

#: Floor for both maxima and the scale, so dead channels and zero columns stay finite.
EPS = 1e-5


class SmoothQuant(W8A8Settings):
    """SmoothQuant: smooth activation outliers into the weights, then int8 weights and inputs."""

    method = "smoothquant"
    family = "quantization"

    alpha: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="migration strength: 0 leaves activations alone, 1 moves all into weights",
    )
    activations: Activations = Field(
        default="per_token",
        description="per_tensor: one static step calibrated per layer; per_token: dynamic",
    )


def smoothing_scale(act_max: Tensor, consumers: list[nn.Module], alpha: float) -> Tensor:
    """s_j = max|X_j|^alpha / max over consumers of max|W_:,j| ^ (1 - alpha)."""
    column_max = [c.weight.detach().abs().amax(dim=0).float() for c in consumers]
    weight_max = torch.stack(column_max).amax(dim=0)
    act = act_max.float().to(weight_max.device).clamp(min=EPS)
    scale = act.pow(alpha) / weight_max.clamp(min=EPS).pow(1.0 - alpha)
    return scale.clamp(min=EPS)


def _current_path(model: nn.Module, name: str) -> str:
    """Where the linear once called ``name`` is now: inside an ``InputScaled``, or in place."""
    module = model.get_submodule(name)
    return f"{name}.inner" if isinstance(module, InputScaled) else name


def _smooth_groups(
    slim: SlimModel, block: BlockContext, targets: dict[str, nn.Linear], alpha: float
) -> dict[str, Tensor]:
    """Smooth every group whose consumers are all selected; the scale each consumer got."""
    names = {id(module): name for name, module in block.linears.items()}
    scales: dict[str, Tensor] = {}
    for group in slim.adapter.scale_groups(block.layer):
        members = [names.get(id(consumer)) for consumer in group.consumers]
        if not members or not all(name in targets for name in members):
            continue
        scale = smoothing_scale(_group_max(block, members), group.consumers, alpha)
        apply_input_scale(slim.model, group, scale)
        scales.update(dict.fromkeys(members, scale))
    return scales


def _group_max(block: BlockContext, members: list[str]) -> Tensor:
    """The group's input max per channel (its consumers read the same input)."""
    return torch.stack([block.stats[name].abs_max for name in members]).amax(dim=0)


@register_method(SmoothQuant)
def apply_smoothquant(slim: SlimModel, config: SmoothQuant, context: StageContext) -> None:
    targets = config.select(slim)

    def process(block: BlockContext) -> None:
        scales = _smooth_groups(slim, block, targets, config.alpha)
        for name in block.linears:
            if name not in targets:
                continue
            abs_max = block.stats[name].abs_max
            if name in scales:  # the input is now x / s
                abs_max = abs_max / scales[name].to(abs_max.device)
            path = _current_path(slim.model, name)
            linear = slim.model.get_submodule(path)
            replace_module(slim.model, path, quantized_linear(linear, config, abs_max))

    calibrated_quantization(slim, config, context, process, targets)
