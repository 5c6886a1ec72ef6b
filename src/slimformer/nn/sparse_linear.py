"""A linear layer whose pruned weight is stored compactly: bytes on disk fall with sparsity.

What pruning methods (magnitude, Wanda, SparseGPT) produce. Saved buffers
(see :mod:`slimformer.nn.sparse_formats` for the layouts):

* unstructured: ``mask`` uint8 ``[out, ceil(in / 8)]`` (packed keep-bits) and
  ``values`` ``[nnz]`` in the weight's own dtype
* N:M: ``values`` ``[out, in * N / M]`` and ``indices`` uint8, each kept
  value's position in its group packed at ``ceil(log2 M)`` bits
* ``bias`` ``[out]`` or absent
* ``scales`` float16 ``[out]``, only when the values are quantized

Values keep the dtype they were pruned in, so a reload rebuilds the very
same weight and gives bit-identical outputs. Pruning composes with
quantization: :meth:`SparseLinear.with_quantized_values` swaps the kept
values for 8-bit symmetric codes (int8, one fp16 scale a row) in the same
layout, so a 2:4 layer costs 8 + 2 bits a kept weight, 5 bits a weight.

Speed, honestly: ``forward`` rebuilds the dense weight once, caches it, and
runs the ordinary dense ``F.linear``. Dense kernels multiply zeros as fast as
any other number, so an unstructured sparse model is smaller on disk but no
faster, and the cache makes it (values + mask + dense copy) larger in memory
than the dense model. Sparse CPU kernels (torch.sparse CSR) only pay off at
very high sparsity, and 2:4 needs sparse tensor cores (NVIDIA Ampere or
later) to be faster; see ``benchmarks/sparse_kernels.py``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimformer.nn.grid import QuantizedWeight, QuantScheme
from slimformer.nn.packing import packed_width, unpack
from slimformer.nn.registry import float_weight, float_weights_cached, register_module
from slimformer.nn.sparse_formats import (
    decode_bitmask,
    decode_n_of_m,
    encode_bitmask,
    encode_n_of_m,
    index_bits,
)


def split_pattern(pattern: str) -> tuple[int, int] | None:
    """``(n, m)`` of an ``"N:M"`` pattern, None for ``"unstructured"``."""
    if pattern == "unstructured":
        return None
    n, m = (int(part) for part in pattern.split(":"))
    return n, m


@register_module
class SparseLinear(nn.Module):
    """Drop-in replacement for ``nn.Linear`` holding a pruned weight in a compact layout."""

    kind = "sparse_linear"
    #: The one grid quantized kept values are stored on: int8 codes, one scale a row.
    VALUE_SCHEME = QuantScheme(8, 0, True)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        pattern: str = "unstructured",
        nnz: int = 0,
        dtype: torch.dtype = torch.float32,
        bias: bool = True,
        value_bits: int | None = None,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.pattern = pattern
        #: 8 when the kept values are int8 codes with a per-row scale, None when float.
        self.value_bits = value_bits
        if value_bits is not None:
            if value_bits != 8:
                raise ValueError(f"sparse values are stored at 8 bits, not {value_bits}")
            dtype = torch.int8
        nm = split_pattern(pattern)
        if nm is None:
            mask = torch.zeros(out_features, packed_width(in_features, 1), dtype=torch.uint8)
            self.register_buffer("mask", mask)
            self.register_buffer("values", torch.zeros(nnz, dtype=dtype))
        else:
            n, m = nm
            kept = in_features // m * n
            self.register_buffer("values", torch.zeros(out_features, kept, dtype=dtype))
            width = packed_width(kept, index_bits(m))
            self.register_buffer("indices", torch.zeros(out_features, width, dtype=torch.uint8))
        bias_dtype = torch.float32 if value_bits else dtype
        self.register_buffer("bias", torch.zeros(out_features, dtype=bias_dtype) if bias else None)
        scales = torch.ones(out_features, dtype=torch.float16) if value_bits else None
        self.register_buffer("scales", scales)

    @classmethod
    def from_pruned(
        cls,
        weight: torch.Tensor,
        keep: torch.Tensor,
        bias: torch.Tensor | None = None,
        pattern: str = "unstructured",
    ) -> SparseLinear:
        """Store ``weight`` where ``keep`` is set (pruned entries are dropped, not kept as 0)."""
        out_features, in_features = weight.shape
        weight = weight.detach()
        nm = split_pattern(pattern)
        nnz = int(keep.sum()) if nm is None else 0
        module = cls(in_features, out_features, pattern, nnz, weight.dtype, bias is not None)
        module.to(weight.device)
        if nm is None:
            module.mask, module.values = encode_bitmask(weight, keep)
        else:
            module.values, module.indices = encode_n_of_m(weight, keep, *nm)
        if bias is not None:
            module.bias = bias.detach().to(weight.dtype).clone()
        return module

    def with_quantized_values(self, qw: QuantizedWeight) -> SparseLinear:
        """A copy of this layer whose kept values are ``qw``'s codes (same layout, same mask).

        ``qw`` quantizes this layer's dense weight on an 8-bit symmetric
        per-row grid, whose zero point is the fixed offset 128: a code minus
        128 fits int8, and a pruned zero stays exactly zero.
        """
        if qw.scheme != self.VALUE_SCHEME:
            raise ValueError(f"sparse values take 8-bit symmetric per-row codes, not {qw.scheme}")
        signed = (qw.codes.to(torch.int16) - qw.zeros.to(torch.int16)).to(torch.int8)
        module = SparseLinear.from_pruned(signed, self.keep_mask(), None, self.pattern)
        module.value_bits = 8
        module.scales = qw.scales.reshape(-1).to(torch.float16)
        if self.bias is not None:
            module.bias = self.bias.detach().float().clone()
        return module

    def keep_mask(self) -> torch.Tensor:
        """Bool ``[out, in]``: the stored positions (an N:M group always stores N)."""
        nm = split_pattern(self.pattern)
        if nm is None:
            return unpack(self.mask, 1, self.in_features).bool()
        ones = torch.ones_like(self.values, dtype=torch.uint8)
        return decode_n_of_m(ones, self.indices, *nm, self.in_features).bool()

    def dense_weight(self) -> torch.Tensor:
        """The ``[out, in]`` weight rebuilt from the stored layout (zeros where pruned)."""
        nm = split_pattern(self.pattern)
        if nm is None:
            weight = decode_bitmask(self.mask, self.values, self.in_features)
        else:
            weight = decode_n_of_m(self.values, self.indices, *nm, self.in_features)
        if self.scales is None:
            return weight
        return weight.float() * self.scales.float()[:, None]

    @property
    def sparsity(self) -> float:
        """Share of zeros in the weight."""
        weight = self.dense_weight()
        return 1.0 - int(torch.count_nonzero(weight)) / weight.numel()

    # -- the CompressedModule protocol --------------------------------------------
    def spec(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "pattern": self.pattern,
            "nnz": self.values.numel() if split_pattern(self.pattern) is None else 0,
            "dtype": str(self.values.dtype).removeprefix("torch."),
            "bias": self.bias is not None,
            "value_bits": self.value_bits,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> SparseLinear:
        return cls(
            spec["in_features"],
            spec["out_features"],
            spec["pattern"],
            spec["nnz"],
            getattr(torch, spec["dtype"]),
            spec["bias"],
            spec.get("value_bits"),  # absent in files saved before quantized values
        )

    def logical_weights(self) -> list[torch.Tensor]:
        """The dense weight (so zeros count as pruned weights) and the bias."""
        return [t for t in (self.dense_weight(), self.bias) if t is not None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self._weight(x), self.bias)

    def _weight(self, x: torch.Tensor) -> torch.Tensor:
        """The dense weight: cached for the block during calibration, else for good."""
        if float_weights_cached():  # calibration: freed with the block, not kept per layer
            device = x.device.type
            dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
            return float_weight(self, self.dense_weight, dtype)
        if "_dense" not in self.__dict__:
            self.__dict__["_dense"] = self.dense_weight()
        return self.__dict__["_dense"]

    def _apply(self, fn, recurse=True):
        self.__dict__.pop("_dense", None)  # device or dtype moves rebuild the cache
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self.__dict__.pop("_dense", None)  # new values: the cached weight is stale
        super()._load_from_state_dict(*args, **kwargs)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"pattern={self.pattern}, bias={self.bias is not None}"
            + ("" if self.value_bits is None else f", value_bits={self.value_bits}")
        )
