"""Fused dequantize-and-multiply kernels for weight-only layers on CPU, for decoding.

Generating one token at a time multiplies a handful of activation rows by
every weight: the cost is reading the weights, so a layer that unpacks its
codes into a full float matrix on every call is slower than fp32, not
faster. PyTorch ships CPU kernels that read the packed integers directly:

- ``_weight_int8pack_mm``: int8 codes, one scale per output channel
  (our symmetric 8-bit grid with no groups maps onto it exactly);
- ``_weight_int4pack_mm_for_cpu``: 4-bit codes in groups of 32-256 with a
  scale and a float zero per group (our asymmetric or symmetric 4-bit grid
  maps onto it: ``(q - z) * s == (q - 8) * s + (8 - z) * s``).

Both take bf16 activations, so results differ from the float path by bf16
rounding. The kernel form of the weights is derived from the saved tensors
when first needed and never saved. Calls with many rows (a prefill) keep the
dequantizing path, where one unpack is amortised over the whole matrix product.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from slimformer.nn.grid import QuantizedWeight

#: Rows (tokens) per call up to which the fused kernel is used.
MAX_KERNEL_ROWS = 16
_INT4_GROUPS = (32, 64, 128, 256)

Kernel = Callable[[torch.Tensor], torch.Tensor]


def build_kernel(qw: QuantizedWeight) -> Kernel | None:
    """A fused kernel for ``qw`` on CPU, or None where no kernel fits the scheme."""
    scheme = qw.scheme
    if scheme.bits == 8 and scheme.symmetric and scheme.group_size == 0:
        return _int8_kernel(qw)
    if (
        scheme.bits == 4
        and scheme.group_size in _INT4_GROUPS
        and qw.shape[0] % 16 == 0  # the packing works on tiles of 16 output rows
        and _has("_weight_int4pack_mm_for_cpu")
    ):
        return _int4_kernel(qw)
    return None


def _has(op: str) -> bool:
    return hasattr(torch.ops.aten, op)


def _int8_kernel(qw: QuantizedWeight) -> Kernel:
    codes = (qw.codes.to(torch.int16) - qw.zeros.to(torch.int16)).to(torch.int8).contiguous()
    scales = qw.scales[:, 0].to(torch.bfloat16).contiguous()

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch._weight_int8pack_mm(x.to(torch.bfloat16), codes, scales)

    return run


def _int4_kernel(qw: QuantizedWeight) -> Kernel:
    group = qw.scheme.group_size
    packed = torch._convert_weight_to_int4pack_for_cpu(qw.codes.to(torch.int32).contiguous(), 1)
    scales = qw.scales.float()  # [out, n_groups]
    zeros = (8.0 - qw.zeros.float()) * scales
    scales_and_zeros = torch.stack([scales.t(), zeros.t()], dim=-1).to(torch.bfloat16).contiguous()

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch._weight_int4pack_mm_for_cpu(
            x.to(torch.bfloat16), packed, group, scales_and_zeros
        )

    return run
