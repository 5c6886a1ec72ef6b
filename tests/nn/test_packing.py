"""Bit packing of integer codes: exact round trips, dense layouts, loud misuse."""

from __future__ import annotations

import math

import pytest
import torch

from slimformer.nn.packing import pack, packed_width, unpack

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # the parametrised tests below cover the same ground
    given = None

BITS = (2, 3, 4, 8)
AWKWARD_COLS = (1, 2, 3, 5, 7, 8, 9, 13, 16, 23, 64, 67, 100)


def random_codes(rows: int, cols: int, bits: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2**bits, (rows, cols), generator=generator, dtype=torch.uint8)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("cols", AWKWARD_COLS)
def test_round_trip(bits, cols):
    codes = random_codes(5, cols, bits, seed=cols)
    packed = pack(codes, bits)
    assert packed.dtype == torch.uint8
    assert packed.shape == (5, math.ceil(cols * bits / 8)) == (5, packed_width(cols, bits))
    assert torch.equal(unpack(packed, bits, cols), codes)


@pytest.mark.parametrize("bits", [1, 5, 6, 7])
def test_other_widths_round_trip_too(bits):
    codes = random_codes(3, 29, bits)
    assert torch.equal(unpack(pack(codes, bits), bits, 29), codes)


@pytest.mark.parametrize("bits", BITS)
def test_extreme_codes(bits):
    for value in (0, 2**bits - 1):
        codes = torch.full((2, 11), value, dtype=torch.uint8)
        assert torch.equal(unpack(pack(codes, bits), bits, 11), codes)


@pytest.mark.parametrize("bits", BITS)
def test_empty_shapes(bits):
    for rows, cols in [(0, 8), (3, 0)]:
        codes = torch.zeros(rows, cols, dtype=torch.uint8)
        packed = pack(codes, bits)
        assert packed.shape == (rows, packed_width(cols, bits))
        assert unpack(packed, bits, cols).shape == (rows, cols)


def test_layouts_are_little_endian_bit_streams():
    """The byte layout is a saved format: pin it down."""
    four = torch.tensor([[0x1, 0x2, 0xF]], dtype=torch.uint8)
    assert pack(four, 4).tolist() == [[0x21, 0x0F]]  # low nibble first, zero padding
    two = torch.tensor([[1, 2, 3, 0, 3]], dtype=torch.uint8)
    assert pack(two, 2).tolist() == [[1 | 2 << 2 | 3 << 4, 3]]
    three = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 0]], dtype=torch.uint8)
    word = sum(v << (3 * i) for i, v in enumerate([1, 2, 3, 4, 5, 6, 7, 0]))
    assert pack(three, 3).tolist() == [[word & 255, word >> 8 & 255, word >> 16]]
    eight = torch.tensor([[0, 128, 255]], dtype=torch.uint8)
    assert torch.equal(pack(eight, 8), eight)


def test_three_bits_use_three_bytes_per_eight_codes():
    codes = random_codes(4, 64, 3)
    assert pack(codes, 3).shape == (4, 24)
    # a partial block keeps only the bytes it needs: 9 codes are 27 bits, 4 bytes
    assert pack(random_codes(4, 9, 3), 3).shape == (4, 4)


def test_rows_are_independent():
    codes = random_codes(6, 13, 3)
    packed = pack(codes, 3)
    assert torch.equal(pack(codes[2:4], 3), packed[2:4])


def test_pack_rejects_codes_too_large():
    with pytest.raises(ValueError, match="too large for 3 bits"):
        pack(torch.tensor([[8]], dtype=torch.uint8), 3)


def test_pack_rejects_other_dtypes_and_shapes():
    with pytest.raises(ValueError, match="2-D uint8"):
        pack(torch.zeros(2, 4, dtype=torch.int8), 4)
    with pytest.raises(ValueError, match="2-D uint8"):
        pack(torch.zeros(4, dtype=torch.uint8), 4)


def test_unpack_rejects_a_wrong_width():
    packed = pack(random_codes(2, 16, 4), 4)
    with pytest.raises(ValueError, match="17 codes of 4 bits take 9 bytes a row, got 8"):
        unpack(packed, 4, 17)


def test_bits_out_of_range():
    with pytest.raises(ValueError, match="between 1 and 8"):
        pack(torch.zeros(1, 1, dtype=torch.uint8), 9)


if given is not None:

    @settings(max_examples=60, deadline=None)
    @given(
        bits=st.sampled_from(BITS),
        rows=st.integers(0, 4),
        cols=st.integers(0, 70),
        seed=st.integers(0, 2**16),
    )
    def test_round_trip_property(bits, rows, cols, seed):
        codes = random_codes(rows, cols, bits, seed)
        packed = pack(codes, bits)
        assert packed.shape == (rows, math.ceil(cols * bits / 8))
        assert torch.equal(unpack(packed, bits, cols), codes)
