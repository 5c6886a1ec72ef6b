"""An embedding table stored as int8 codes with one fp16 scale a row.

Token embeddings are most of a small encoder's weights (MiniLM: 11.7M of
22.7M), so quantizing only the linears leaves the table as the bulk of the
file. Each row is quantized on its own symmetric grid (absmax / 127, the
8-bit per-row grid of :mod:`slimformer.nn.grid`), so a rare
token with large values costs no precision to the others. Saved buffers:

* ``qweight`` int8 ``[num_embeddings, embedding_dim]``: the signed codes
* ``scales``  float16 ``[num_embeddings]``

That is ``8 + 16 / embedding_dim`` bits a weight, about a quarter of fp32.
``forward`` gathers only the looked-up rows' codes and scales and multiplies
them, so a call never rebuilds the whole float table.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from slimformer.nn.grid import QuantScheme, quantize_weight
from slimformer.nn.registry import register_module

#: The grid every row is stored on: 8 bits, one group a row, symmetric.
ROW_SCHEME = QuantScheme(8, 0, True)


@register_module
class Int8Embedding(nn.Module):
    """Drop-in replacement for ``nn.Embedding`` (lookup only) with int8 rows."""

    kind = "int8_embedding"

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        # Kept for code that reads it (HF models do); the forward pass returns the stored
        # row for it, as nn.Embedding does: padding_idx only changes gradients there.
        self.padding_idx = padding_idx
        #: The dtype lookups return: the float dtype the table had, like the model's weights.
        self.dtype = dtype
        self.register_buffer(
            "qweight", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8)
        )
        self.register_buffer("scales", torch.ones(num_embeddings, dtype=torch.float16))

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding) -> Int8Embedding:
        """Quantize ``embedding``'s table row by row (absmax / 127, fp16 scales)."""
        weight = embedding.weight.detach()
        num, dim = weight.shape
        module = cls(num, dim, embedding.padding_idx, weight.dtype).to(weight.device)
        qw = quantize_weight(weight, ROW_SCHEME)
        # Symmetric codes carry the fixed offset 128, so code - 128 is in [-127, 127].
        module.qweight.copy_((qw.codes.to(torch.int16) - qw.zeros.to(torch.int16)).to(torch.int8))
        module.scales.copy_(qw.scales.reshape(-1).to(torch.float16))
        return module

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 table the codes stand for (for checks; ``forward`` never builds it)."""
        return self.qweight.float() * self.scales.float()[:, None]

    # -- the CompressedModule protocol --------------------------------------------
    def spec(self) -> dict[str, Any]:
        return {
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "padding_idx": self.padding_idx,
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Int8Embedding:
        return cls(
            spec["num_embeddings"],
            spec["embedding_dim"],
            spec["padding_idx"],
            getattr(torch, spec["dtype"]),
        )

    def logical_weights(self) -> list[torch.Tensor]:
        """The dequantized table: int8 codes would miscount weights and zeros."""
        return [self.dequantized_weight()]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        codes = self.qweight[ids]  # [*ids.shape, dim], only the rows asked for
        scales = self.scales[ids].unsqueeze(-1)
        return (codes.float() * scales.float()).to(self.dtype)

    def _apply(self, fn, recurse=True):
        """Follow device moves and float casts in the output, but keep the scales fp16.

        ``model.to(torch.bfloat16)`` (the ``float`` method) would otherwise round
        the stored fp16 scales to bf16 and leave lookups float32 in a bf16 model.
        """
        scales = self.scales
        super()._apply(fn, recurse)
        self.scales = scales.to(self.scales.device)
        probe = fn(torch.zeros((), dtype=self.dtype))
        if probe.is_floating_point():
            self.dtype = probe.dtype
        return self

    def extra_repr(self) -> str:
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}, int8 rows"
