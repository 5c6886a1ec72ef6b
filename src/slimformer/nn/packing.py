"""Dense bit packing of integer codes, so a b-bit weight costs b bits on disk and in memory.

Each row is one little-endian bit stream: code ``j`` of a row occupies bits
``j * bits .. j * bits + bits - 1`` of the row's bytes (lowest bit first). For
4 bits that is two codes a byte, low nibble first; for 2 bits four a byte; for
3 bits eight codes in three bytes. Rows are packed independently, so a row
whose length is not a whole number of bytes ends in zero padding bits, and a
packed row is exactly ``ceil(cols * bits / 8)`` bytes.

The work is done on blocks of ``lcm(bits, 8)`` bits (8 codes of 3 bits in 3
bytes, 2 codes of 4 bits in 1 byte, ...), with a Python loop over the few
positions within a block and torch doing every block at once.
"""

from __future__ import annotations

import math

import torch


def packed_width(cols: int, bits: int) -> int:
    """Bytes per packed row of ``cols`` codes."""
    return math.ceil(cols * bits / 8)


def _block(bits: int) -> tuple[int, int]:
    """Codes and bytes per block: the smallest run of codes that fills whole bytes."""
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be between 1 and 8, got {bits}")
    common = math.gcd(bits, 8)
    return 8 // common, bits // common


def _word_dtype(bits: int) -> torch.dtype:
    codes_per_block, _ = _block(bits)
    return torch.int32 if codes_per_block * bits <= 31 else torch.int64


def pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack uint8 ``codes`` ``[rows, cols]``, each below ``2**bits``, into ``[rows, bytes]``."""
    if codes.dtype != torch.uint8 or codes.dim() != 2:
        raise ValueError(f"expected 2-D uint8 codes, got {codes.dtype} {tuple(codes.shape)}")
    if codes.numel() and int(codes.max()) >= 2**bits:
        raise ValueError(f"a code is {int(codes.max())}, too large for {bits} bits")
    per_block, block_bytes = _block(bits)
    rows, cols = codes.shape
    if bits == 8:
        return codes.contiguous().clone()
    blocks = -(-cols // per_block)
    padded = torch.nn.functional.pad(codes, (0, blocks * per_block - cols))
    padded = padded.reshape(rows, blocks, per_block).to(_word_dtype(bits))
    word = torch.zeros(rows, blocks, dtype=padded.dtype, device=codes.device)
    for position in range(per_block):
        word |= padded[:, :, position] << (position * bits)
    parts = [(word >> (8 * i)) & 0xFF for i in range(block_bytes)]
    packed = torch.stack(parts, dim=2).reshape(rows, blocks * block_bytes).to(torch.uint8)
    # bytes past ceil(cols * bits / 8) hold only padding bits, which are zero
    return packed[:, : packed_width(cols, bits)].contiguous()


def unpack(packed: torch.Tensor, bits: int, cols: int) -> torch.Tensor:
    """The uint8 codes ``[rows, cols]`` that ``pack(codes, bits)`` turned into ``packed``."""
    if packed.dtype != torch.uint8 or packed.dim() != 2:
        raise ValueError(f"expected 2-D uint8 bytes, got {packed.dtype} {tuple(packed.shape)}")
    if packed.shape[1] != packed_width(cols, bits):
        raise ValueError(
            f"{cols} codes of {bits} bits take {packed_width(cols, bits)} bytes a row, "
            f"got {packed.shape[1]}"
        )
    per_block, block_bytes = _block(bits)
    if bits == 8:
        return packed.contiguous().clone()
    rows = packed.shape[0]
    blocks = -(-cols // per_block)
    padded = torch.nn.functional.pad(packed, (0, blocks * block_bytes - packed.shape[1]))
    padded = padded.reshape(rows, blocks, block_bytes).to(_word_dtype(bits))
    word = torch.zeros(rows, blocks, dtype=padded.dtype, device=packed.device)
    for i in range(block_bytes):
        word |= padded[:, :, i] << (8 * i)
    mask = 2**bits - 1
    codes = [(word >> (position * bits)) & mask for position in range(per_block)]
    codes = torch.stack(codes, dim=2).reshape(rows, blocks * per_block)
    return codes[:, :cols].to(torch.uint8).contiguous()
