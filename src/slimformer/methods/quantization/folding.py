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

from slimformer.arch import OutputRows, ScaleGroup
from slimformer.nn import replace_module
from slimformer.nn.input_scaled import InputScaled, innermost


@torch.no_grad()
def apply_input_scale(model: nn.Module, group: ScaleGroup, scale: torch.Tensor) -> None:
    """Scale ``group``'s consumer columns by ``scale`` and undo it on their input."""
    scale = scale.detach().float()
    if not all(_float_weight(consumer) for consumer in group.consumers):
        raise ValueError(f"{group.name}: only float linear consumers can take an input scale")
    for consumer in group.consumers:
        weight = consumer.weight
        weight.mul_(scale.to(weight.dtype)[None, :])
    target = absorber(group.producer)
    if target is None:
        names = {id(module): name for name, module in model.named_modules()}
        for consumer in group.consumers:
            replace_module(model, names[id(consumer)], InputScaled(consumer, 1.0 / scale))
    else:
        _divide_output(target, scale)


def _float_weight(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(weight, torch.Tensor) and weight.is_floating_point()


def absorber(producer: nn.Module | None) -> nn.Module | None:
    """The module that can take ``1/s`` into its output, or None.

    A float ``nn.Linear`` (its rows) or a norm with a 1-D float affine can. An
    ``InputScaled`` wrapper passes it to its inner module; ``OutputRows`` (the
    v rows of a fused q/k/v projection) can when its linear can. Anything an
    earlier stage compressed (integer codes) cannot, and the scale is then
    applied explicitly instead.
    """
    if producer is None:
        return None
    if isinstance(producer, OutputRows):  # rows of a fused projection: if it can, they can
        inner = absorber(producer.linear)
        if not isinstance(inner, nn.Linear):
            return None
        return OutputRows(inner, producer.start, producer.stop)
    producer = innermost(producer)
    if isinstance(producer, nn.Linear):
        return producer
    weight = getattr(producer, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() == 1 and weight.is_floating_point():
        return producer
    return None


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
