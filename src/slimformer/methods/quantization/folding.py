"""Moving a per-channel scale from a layer group's input into its weights.

For a group of linears that read the same input X (see
``Adapter.scale_groups``): ``W @ X == (W * s) @ (X / s)``. The consumers'
weight columns are multiplied by ``s`` and the producer's output divided by
it, so the model computes the same function while the weights see a
different range: AWQ protects salient input channels this way, SmoothQuant
moves activation outliers into the weights.
"""

from __future__ import annotations

import torch
from torch import nn

from slimformer.arch import ScaleGroup
from slimformer.nn import replace_module
from slimformer.nn.input_scaled import InputScaled


@torch.no_grad()
def apply_input_scale(model: nn.Module, group: ScaleGroup, scale: torch.Tensor) -> None:
    """Scale ``group``'s consumer columns by ``scale`` and undo it on their input."""
    scale = scale.detach().float()
    for consumer in group.consumers:
        weight = consumer.weight
        weight.mul_(scale.to(weight.dtype)[None, :])
    if group.producer is None:
        names = {id(module): name for name, module in model.named_modules()}
        for consumer in group.consumers:
            replace_module(model, names[id(consumer)], InputScaled(consumer, 1.0 / scale))
    else:
        _divide_output(group.producer, scale)


def _divide_output(producer: nn.Module, scale: torch.Tensor) -> None:
    """Divide what ``producer`` outputs by ``scale``: a norm's affine, or a linear's rows."""
    weight = producer.weight
    if weight.dim() == 1:  # LayerNorm / RMSNorm: output = normalised * weight (+ bias)
        weight.div_(scale.to(weight.dtype))
    else:  # Linear: output rows
        weight.div_(scale.to(weight.dtype)[:, None])
    bias = getattr(producer, "bias", None)
    if bias is not None:
        bias.div_(scale.to(bias.dtype))
