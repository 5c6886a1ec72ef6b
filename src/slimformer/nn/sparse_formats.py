"""The two compact layouts of a sparse weight matrix, as pure encode/decode functions.

* Unstructured: a packed bitmask (1 bit a weight, row-major, bit ``j`` of a
  row's bytes lowest-first, as :mod:`slimformer.nn.packing` packs 1-bit codes)
  plus the kept values in row-major order. At 50% sparsity an fp32 weight
  costs 16 + 1 = 17 bits instead of 32.
* N:M: the kept values as a regular ``[out, in * N / M]`` matrix plus, for
  each kept value, its position inside its group of M, packed at
  ``ceil(log2 M)`` bits (2 bits for M = 4: the metadata layout of sparse
  tensor cores). 2:4 costs one bit of metadata a weight, like the bitmask,
  but its values need no mask to be placed.

Decoding rebuilds exactly the matrix that was encoded, bit for bit.
"""

from __future__ import annotations

import math

import torch

from slimformer.nn.packing import pack, unpack


def index_bits(m: int) -> int:
    """Bits of one position inside a group of ``m``."""
    return max(1, math.ceil(math.log2(m)))


def encode_bitmask(weight: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed keep-mask ``[out, ceil(in / 8)]`` and the kept values ``[nnz]``."""
    return pack(keep.to(torch.uint8), 1), weight[keep].contiguous()


def decode_bitmask(bits: torch.Tensor, values: torch.Tensor, in_features: int) -> torch.Tensor:
    """The dense ``[out, in]`` weight: ``values`` placed where the mask is set, zeros elsewhere."""
    keep = unpack(bits, 1, in_features).bool()
    weight = torch.zeros(keep.shape, dtype=values.dtype, device=values.device)
    weight[keep] = values
    return weight


def n_of_m_positions(weight: torch.Tensor, keep: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Per group, the sorted positions of its kept weights ``[out, in / m, n]``.

    A group with fewer than ``n`` kept weights (a weight that was zero before
    pruning stayed "pruned") fills up with its first pruned positions, whose
    stored values are zero, so the decoded matrix is unchanged. More than
    ``n`` is a bug.
    """
    rows, cols = weight.shape
    groups = keep.reshape(rows, cols // m, m)
    if int(groups.sum(dim=2).max()) > n:
        raise ValueError(f"a group keeps more than {n} of {m} weights: not an {n}:{m} matrix")
    # kept positions first, then pruned ones, each in column order: a stable sort does both
    order = torch.argsort((~groups).to(torch.uint8), dim=2, stable=True)
    return order[:, :, :n].sort(dim=2).values


def encode_n_of_m(
    weight: torch.Tensor, keep: torch.Tensor, n: int, m: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kept values ``[out, in * n / m]`` and their packed in-group positions."""
    rows, cols = weight.shape
    positions = n_of_m_positions(weight, keep, n, m)
    values = weight.reshape(rows, cols // m, m).gather(2, positions)
    kept = keep.reshape(rows, cols // m, m).gather(2, positions)
    values = torch.where(kept, values, torch.zeros_like(values))  # fill-up positions hold 0
    packed = pack(positions.reshape(rows, -1).to(torch.uint8), index_bits(m))
    return values.reshape(rows, -1).contiguous(), packed


def decode_n_of_m(
    values: torch.Tensor, indices: torch.Tensor, n: int, m: int, in_features: int
) -> torch.Tensor:
    """The dense ``[out, in]`` weight of :func:`encode_n_of_m`'s output."""
    rows = values.shape[0]
    groups = in_features // m
    positions = unpack(indices, index_bits(m), groups * n).long().reshape(rows, groups, n)
    weight = torch.zeros(rows, groups, m, dtype=values.dtype, device=values.device)
    weight.scatter_(2, positions, values.reshape(rows, groups, n))
    return weight.reshape(rows, in_features)
