"""A linear layer with int8 weights and int8 activations on a calibrated, fixed scale.

The static counterpart of :class:`~slimformer.nn.int8_linear.Int8DynamicLinear`.
Weights are the same int8 codes per output channel; the input is quantized
with ONE scale for the whole tensor, fixed at calibration time from the
largest |x| the layer saw. That saves the per-token max-reduction at run time
(the quantization is a multiply, round and clamp that fuses into the previous
kernel), at the price that one outlier channel sets the step for every
channel, which is the problem SmoothQuant exists to fix. Inputs beyond the
calibrated range are clamped to ±127 steps.
"""

from __future__ import annotations

import torch
from torch import nn

from slimformer.nn.int8_linear import QMAX, Int8WeightBase
from slimformer.nn.registry import register_module


def input_scale_from_range(abs_max: torch.Tensor | float, clip: float = 1.0) -> torch.Tensor:
    """The per-tensor step that maps ``clip`` x the calibrated max |x| to 127.

    ``abs_max`` may be per channel; the largest entry sets the range. The step
    never reaches zero, so a layer whose input was all zeros stays finite.
    """
    peak = torch.as_tensor(abs_max, dtype=torch.float32).detach().max()
    return (peak * clip / QMAX).clamp(min=1e-12)


def quantize_per_tensor(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 codes of ``x`` on the fixed step ``scale``, saturating at ±127."""
    return torch.round(x / scale).clamp(-QMAX, QMAX).to(torch.int8)


@register_module
class Int8StaticLinear(Int8WeightBase):
    """Drop-in replacement for ``nn.Linear`` with W8A8 static (per-tensor) quantization."""

    kind = "int8_static_linear"

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias)
        self.register_buffer("input_scale", torch.tensor(1.0, dtype=torch.float32))

    @classmethod
    def from_linear(cls, linear: nn.Linear, input_scale: torch.Tensor | float) -> Int8StaticLinear:
        """Quantize ``linear``'s weights; ``input_scale`` is the calibrated activation step."""
        module = cls(linear.in_features, linear.out_features, linear.bias is not None)
        module._load_linear(linear)
        module.input_scale.copy_(torch.as_tensor(input_scale, dtype=torch.float32).reshape(()))
        return module.to(linear.weight.device)

    @property
    def input_range(self) -> float:
        """The largest |x| representable without clamping."""
        return float(self.input_scale) * QMAX

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes = quantize_per_tensor(x.reshape(-1, x.shape[-1]).float(), self.input_scale)
        return self._product(x, codes, self.input_scale)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"w8a8 static, input_range={self.input_range:.4g}"
        )
