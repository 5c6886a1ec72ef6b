"""A linear layer with 2-8 bit integer weights in groups and float activations.

This is the storage every weight-only method (RTN, GPTQ, AWQ, mixed precision)
produces: the grid is defined in :mod:`slimformer.nn.grid`,
codes are bit-packed densely (:mod:`slimformer.nn.packing`), and each group of
``group_size`` inputs of a row has an fp16 scale and, unless symmetric, an
integer zero point packed at the same width as the codes. Saved buffers:

* ``qweight``  uint8 ``[out, ceil(in * bits / 8)]``: the codes, packed
* ``scales``   float16 ``[out, n_groups]``
* ``zeros``    uint8 ``[out, ceil(n_groups * bits / 8)]``: packed zero points
  (absent when symmetric: the zero point is the fixed offset ``2**(bits-1)``)
* ``bias``     float32 ``[out]`` or absent

A W4 layer with groups of 64 thus costs about ``4 + 16/64 + 4/64 = 4.31`` bits a
weight. ``forward`` dequantizes the weight and runs ``F.linear`` in the input's
dtype: correct on every device and dtype; fused low-bit kernels can replace it
without changing the format.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimformer.nn.grid import QuantizedWeight, QuantScheme
from slimformer.nn.packing import pack, packed_width, unpack
from slimformer.nn.registry import float_weight, register_module
from slimformer.nn.weight_only_kernels import MAX_KERNEL_ROWS, Kernel, build_kernel


@register_module
class WeightOnlyLinear(nn.Module):
    """Drop-in replacement for ``nn.Linear`` with packed low-bit weights (weight-only)."""

    kind = "weight_only_linear"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bits: int,
        group_size: int,
        symmetric: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.scheme = QuantScheme(bits, group_size, symmetric)
        self.scheme.validate(in_features)
        self.in_features = in_features
        self.out_features = out_features
        n_groups = self.scheme.n_groups(in_features)
        self.register_buffer(
            "qweight", torch.zeros(out_features, packed_width(in_features, bits), dtype=torch.uint8)
        )
        self.register_buffer("scales", torch.ones(out_features, n_groups, dtype=torch.float16))
        zeros = torch.zeros(out_features, packed_width(n_groups, bits), dtype=torch.uint8)
        self.register_buffer("zeros", None if symmetric else zeros)
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        #: Use a fused integer kernel for decoding-sized calls where one fits (bf16 math).
        self.use_kernel = True

    @property
    def bits(self) -> int:
        return self.scheme.bits

    @property
    def n_groups(self) -> int:
        return self.scheme.n_groups(self.in_features)

    @classmethod
    def from_quantized(
        cls, qw: QuantizedWeight, bias: torch.Tensor | None = None
    ) -> WeightOnlyLinear:
        """Store ``qw`` (from any weight-only method) and ``bias`` in a new module."""
        out_features, in_features = qw.shape
        scheme = qw.scheme
        module = cls(
            in_features,
            out_features,
            scheme.bits,
            scheme.group_size,
            scheme.symmetric,
            bias is not None,
        ).to(qw.codes.device)
        module.qweight.copy_(pack(qw.codes, scheme.bits))
        module.scales.copy_(qw.scales.to(torch.float16))
        if not scheme.symmetric:
            module.zeros.copy_(pack(qw.zeros.to(torch.uint8), scheme.bits))
        if bias is not None:
            module.bias = bias.detach().float().clone().to(qw.codes.device)
        return module

    def quantized_weight(self) -> QuantizedWeight:
        """The stored weight unpacked again: codes, float32 scales, zero points."""
        codes = unpack(self.qweight, self.bits, self.in_features)
        if self.zeros is None:
            zeros = torch.full_like(self.scales, 2 ** (self.bits - 1), dtype=torch.uint8)
        else:
            zeros = unpack(self.zeros, self.bits, self.n_groups)
        return QuantizedWeight(codes, self.scales.float(), zeros, self.scheme)

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 ``[out, in]`` weight the stored codes stand for."""
        return self.quantized_weight().dequantize()

    # -- the CompressedModule protocol --------------------------------------------
    def spec(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bits": self.bits,
            "group_size": self.scheme.group_size,
            "symmetric": self.scheme.symmetric,
            "bias": self.bias is not None,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> WeightOnlyLinear:
        return cls(
            spec["in_features"],
            spec["out_features"],
            spec["bits"],
            spec["group_size"],
            spec["symmetric"],
            spec["bias"],
        )

    def logical_weights(self) -> list[torch.Tensor]:
        """The dequantized weight (packed codes would miscount weights and zeros) and bias."""
        return [t for t in (self.dequantized_weight(), self.bias) if t is not None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        kernel = self._kernel() if rows <= MAX_KERNEL_ROWS and x.device.type == "cpu" else None
        bias = None if self.bias is None else self.bias.to(x.dtype)
        if kernel is not None:
            out = kernel(x.reshape(rows, x.shape[-1])).to(x.dtype)
            out = out.reshape(*x.shape[:-1], self.out_features)
            return out if bias is None else out + bias
        dtype = _product_dtype(x)
        weight = float_weight(self, self.dequantized_weight, dtype)
        return F.linear(x, weight, None if bias is None else bias.to(dtype))

    def _kernel(self) -> Kernel | None:
        """The fused CPU kernel for few-row calls, built once from the saved tensors."""
        if not self.use_kernel:
            return None
        if "_fused" not in self.__dict__:
            self.__dict__["_fused"] = build_kernel(self.quantized_weight())
        return self.__dict__["_fused"]

    def _apply(self, fn, recurse=True):
        self.__dict__.pop("_fused", None)  # device or dtype moves invalidate the kernel form
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:
        group = self.scheme.group_size or "channel"
        zero = "sym" if self.scheme.symmetric else "asym"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"w{self.bits} group={group} {zero}"
        )


def _product_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype ``F.linear`` will multiply in: autocast's where it is on, else ``x``'s."""
    device = x.device.type
    if x.is_floating_point() and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def bits_per_weight(module: nn.Module) -> float:
    """Stored bits per weight of a linear-like module: all saved tensors but the bias.

    Counts what ``state_dict`` saves (codes, scales, zero points), so the
    overhead of small groups shows up; divides by ``in_features * out_features``.
    """
    stored = sum(
        tensor.numel() * tensor.element_size() * 8
        for name, tensor in module.state_dict().items()
        if name != "bias"
    )
    return stored / (module.in_features * module.out_features)
