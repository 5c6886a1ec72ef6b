"""Integer weight grids: codes, error bounds, zero points, clipping, and scheme validation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from slimformer.errors import SlimformerError
from slimformer.nn.grid import (
    QuantizedWeight,
    QuantScheme,
    dequantize_codes,
    fake_quantize,
    group_params,
    mse_clip_search,
    quantize_codes,
    quantize_weight,
)

SCHEMES = [
    QuantScheme(bits, group_size, symmetric)
    for bits in (2, 3, 4, 8)
    for group_size in (0, 32)
    for symmetric in (False, True)
]


@pytest.fixture()
def weight() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    w = torch.randn(12, 96, generator=generator) * 0.05
    w[3, 5] = 1.5  # one outlier
    return w


def per_group(t: torch.Tensor, scheme: QuantScheme) -> torch.Tensor:
    """``t`` [out, in] as [out, n_groups, group_width]."""
    return t.reshape(t.shape[0], scheme.n_groups(t.shape[1]), -1)


def group_error(w: torch.Tensor, scheme: QuantScheme, clip, norm: float) -> torch.Tensor:
    error = (quantize_weight(w, scheme, clip).dequantize() - w).abs().pow(norm)
    return per_group(error, scheme).sum(dim=2)


@pytest.mark.parametrize("scheme", SCHEMES, ids=str)
def test_codes_in_range_and_error_within_half_a_step(weight, scheme):
    qw = quantize_weight(weight, scheme)
    assert qw.codes.dtype == torch.uint8 and qw.codes.shape == weight.shape
    assert int(qw.codes.max()) <= 2**scheme.bits - 1
    error = per_group((qw.dequantize() - weight).abs(), scheme)
    assert (error <= qw.scales[..., None] / 2 * (1 + 1e-5)).all()


@pytest.mark.parametrize("scheme", SCHEMES, ids=str)
def test_scales_are_positive_float16_values(weight, scheme):
    qw = quantize_weight(weight, scheme)
    assert qw.scales.dtype == torch.float32 and (qw.scales > 0).all()
    assert torch.equal(qw.scales.half().float(), qw.scales)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_asymmetric_all_positive_and_all_negative_rows(bits):
    scheme = QuantScheme(bits, 0)
    w = torch.stack([torch.linspace(0.2, 1.0, 16), torch.linspace(-3.0, -0.5, 16)])
    qw = quantize_weight(w, scheme)
    assert qw.zeros[:, 0].tolist() == [0, 2**bits - 1]
    assert (qw.codes[0] > 0).all()  # the grid starts at 0, so only positive codes are used
    error = (qw.dequantize() - w).abs()
    assert (error <= qw.scales / 2 * (1 + 1e-5)).all()


def test_asymmetric_uses_the_whole_range():
    w = torch.linspace(-1.0, 3.0, 64)[None]
    qw = quantize_weight(w, QuantScheme(4, 0))
    assert int(qw.codes.min()) == 0 and int(qw.codes.max()) == 15


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_symmetric_zero_offset_and_sign_symmetry(weight, bits):
    scheme = QuantScheme(bits, 32, symmetric=True)
    qw = quantize_weight(weight, scheme)
    assert (qw.zeros == 2 ** (bits - 1)).all() and qw.zeros.dtype == torch.uint8
    assert int(qw.codes.min()) >= 1  # code 0 is unused: the grid is symmetric about 0
    assert torch.equal(quantize_weight(-weight, scheme).dequantize(), -qw.dequantize())
    absmax = per_group(weight.abs(), scheme).amax(dim=2)
    assert (qw.scales >= absmax / (2 ** (bits - 1) - 1)).all()


@pytest.mark.parametrize("symmetric", [False, True])
def test_zero_rows_and_zeros_stay_exact(symmetric):
    w = torch.zeros(3, 64)
    w[1, :32] = torch.linspace(-1, 1, 32)
    w[1, 7] = 0.0
    qw = quantize_weight(w, QuantScheme(4, 32, symmetric))
    assert (qw.scales > 0).all()
    dequantized = qw.dequantize()
    assert not dequantized[0].any() and not dequantized[2].any()
    assert dequantized[1, 7] == 0 and not dequantized[1, 32:].any()


def test_group_params_per_row_and_clipping():
    w = torch.tensor([[-1.0, 0.0, 3.0], [0.5, 1.0, 2.0]])
    scale, zero = group_params(w, QuantScheme(2, 0))
    assert scale.shape == zero.shape == (2,)
    assert scale.tolist() == pytest.approx([4 / 3, 2 / 3], rel=1e-3)
    assert zero.tolist() == [1, 0]
    clipped, _ = group_params(w, QuantScheme(2, 0), clip=0.5)
    assert (clipped < scale).all()
    per_row, _ = group_params(w, QuantScheme(2, 0), clip=torch.tensor([1.0, 0.5]))
    assert per_row[0] == scale[0] and per_row[1] == clipped[1]
    sym_scale, sym_zero = group_params(w, QuantScheme(4, 0, symmetric=True))
    assert sym_zero.tolist() == [8, 8]
    assert sym_scale.tolist() == pytest.approx([3 / 7, 2 / 7], rel=1e-3)


def test_one_column_at_a_time_matches_the_group():
    """GPTQ quantizes column by column with the group's params: same codes."""
    generator = torch.Generator().manual_seed(1)
    w = torch.randn(6, 32, generator=generator)
    scheme = QuantScheme(3, 0)
    scale, zero = group_params(w, scheme)
    whole = quantize_codes(w, scale, zero, 3)
    columns = torch.stack([quantize_codes(w[:, i], scale, zero, 3) for i in range(32)], dim=1)
    assert torch.equal(columns, whole)
    column = dequantize_codes(whole[:, 4], scale, zero)
    assert column.shape == (6,) and torch.equal(column, dequantize_codes(whole, scale, zero)[:, 4])


@pytest.mark.parametrize(("group_size", "n_groups"), [(0, 1), (32, 3), (96, 1), (16, 6)])
def test_quantize_weight_group_shapes(weight, group_size, n_groups):
    qw = quantize_weight(weight, QuantScheme(4, group_size))
    assert isinstance(qw, QuantizedWeight) and qw.shape == (12, 96)
    assert qw.scales.shape == qw.zeros.shape == (12, n_groups)
    assert qw.zeros.dtype == torch.uint8
    assert qw.dequantize().shape == (12, 96) and qw.dequantize().dtype == torch.float32


def test_fake_quantize_keeps_dtype(weight):
    scheme = QuantScheme(4, 32)
    assert torch.equal(fake_quantize(weight, scheme), quantize_weight(weight, scheme).dequantize())
    assert fake_quantize(weight.bfloat16(), scheme).dtype == torch.bfloat16


@pytest.mark.parametrize("scheme", SCHEMES, ids=str)
def test_mse_clip_search_never_increases_error(weight, scheme):
    ratios = mse_clip_search(weight, scheme)
    n_groups = scheme.n_groups(weight.shape[1])
    assert ratios.shape == (12, n_groups)
    assert ((ratios >= 0.8 - 1e-6) & (ratios <= 1.0)).all()
    searched = group_error(weight, scheme, ratios, norm=2.4)
    plain = group_error(weight, scheme, 1.0, norm=2.4)
    assert (searched <= plain).all()


def test_mse_clip_search_helps_with_outliers():
    generator = torch.Generator().manual_seed(2)
    w = torch.randn(32, 64, generator=generator)
    w[:, 0] *= 3  # a long tail: clipping it buys finer steps for the rest
    scheme = QuantScheme(3, 0)
    ratios = mse_clip_search(w, scheme, norm=2.0)
    assert (ratios < 1).any()
    searched = group_error(w, scheme, ratios, norm=2.0).sum()
    assert searched < group_error(w, scheme, 1.0, norm=2.0).sum()


def test_invalid_group_size_names_the_width_and_a_divisor():
    with pytest.raises(SlimformerError) as info:
        QuantScheme(4, 128).validate(576, "model.layers.0.mlp.down_proj")
    message = str(info.value)
    assert "group_size 128 does not divide the 576 input features" in message
    assert "model.layers.0.mlp.down_proj" in message and "e.g. 64" in message
    with pytest.raises(SlimformerError, match=r"divides 100, or 0 for one group per output"):
        QuantScheme(4, 64).validate(100)
    with pytest.raises(SlimformerError, match=r"divides 64, e\.g\. 64"):
        QuantScheme(4, 128).validate(64)


def test_invalid_bits_and_negative_group_size():
    with pytest.raises(SlimformerError, match="5-bit weights are not supported; use bits 2, 3, 4"):
        QuantScheme(5, 0).validate(64)
    with pytest.raises(SlimformerError, match="negative"):
        QuantScheme(4, -1).validate(64)
    with pytest.raises(SlimformerError, match="does not divide"):
        quantize_weight(torch.zeros(2, 48), QuantScheme(4, 32))


def test_scheme_is_frozen_and_counts_groups():
    scheme = QuantScheme(4, 64)
    with pytest.raises(dataclasses.FrozenInstanceError):
        scheme.bits = 3  # type: ignore[misc]
    assert scheme.maxq == 15 and scheme.n_groups(256) == 4 and QuantScheme(4, 0).n_groups(256) == 1
