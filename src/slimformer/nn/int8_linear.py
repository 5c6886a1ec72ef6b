"""A linear layer with int8 weights and int8 activations quantized per token at run time.

Weights are quantized once, symmetrically per output channel, and stored as
int8 (a quarter of their fp32 bytes). At run time each row of the input (one
token) gets its own scale, so an outlier token costs only its own precision,
and the product runs as an int8 x int8 -> int32 matrix product
(``torch._int_mm``, which uses VNNI / AMX on x86 CPUs and int8 tensor cores on
CUDA). The int32 result is rescaled by the token scale times the channel scale.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from slimformer.nn.registry import register_module

QMAX = 127


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 codes and fp32 scales, one scale per output row."""
    scale = weight.detach().abs().amax(dim=1).float().clamp(min=1e-12) / QMAX
    codes = torch.round(weight.detach().float() / scale[:, None]).clamp(-QMAX, QMAX)
    return codes.to(torch.int8), scale


def quantize_per_token(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 codes for a 2-D activation and its per-row scales."""
    scale = x.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12) / QMAX
    codes = torch.round(x / scale).clamp(-QMAX, QMAX).to(torch.int8)
    return codes, scale


def int8_matmul(a: torch.Tensor, b_t: torch.Tensor) -> torch.Tensor:
    """int32 product of int8 ``a`` [M, K] and ``b_t.T`` where ``b_t`` is [N, K].

    ``torch._int_mm`` has shape rules on CUDA (M > 16, K and N multiples of 8);
    outside them the product is computed exactly in fp32 (int8 products summed
    over K < 2**24 / 127**2 terms are exact) so results never depend on shape.
    """
    m, k = a.shape
    n = b_t.shape[0]
    if a.device.type == "cpu" or (m > 16 and k % 8 == 0 and n % 8 == 0):
        return torch._int_mm(a, b_t.t())
    return (a.float() @ b_t.float().t()).round().to(torch.int32)


class Int8WeightBase(nn.Module):
    """int8 weights per output channel, fp32 scales and bias: what W8A8 layers share.

    Subclasses decide only how activations get their scale (per token at run
    time, or one calibrated step); they are separate classes so that no
    static layer ever passes for a dynamic one.
    """

    #: Eager quantize/rescale passes cost more than the int8 product saves;
    #: a compiled graph fuses them away (see slimformer.runtime).
    prefers_compile = True

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    def _load_linear(self, linear: nn.Linear) -> None:
        codes, scale = quantize_per_channel(linear.weight)
        self.weight.copy_(codes)
        self.weight_scale.copy_(scale)
        if linear.bias is not None:
            self.bias = linear.bias.detach().float().clone()

    # -- the CompressedModule protocol --------------------------------------------
    def spec(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]):
        return cls(spec["in_features"], spec["out_features"], spec["bias"])

    def logical_weights(self) -> list[torch.Tensor]:
        return [t for t in (self.weight, self.bias) if t is not None]

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight.float() * self.weight_scale[:, None]

    def _product(self, x: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """int8 product of the activation codes, rescaled, biased, reshaped like ``x``."""
        acc = int8_matmul(codes, self.weight)
        out = acc.float() * (scale * self.weight_scale)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


@register_module
class Int8DynamicLinear(Int8WeightBase):
    """Drop-in replacement for ``nn.Linear`` with W8A8 dynamic quantization."""

    kind = "int8_dynamic_linear"

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8DynamicLinear:
        module = cls(linear.in_features, linear.out_features, linear.bias is not None)
        module._load_linear(linear)
        return module.to(linear.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes, scale = quantize_per_token(x.reshape(-1, x.shape[-1]).float())
        return self._product(x, codes, scale)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, w8a8 dynamic"
