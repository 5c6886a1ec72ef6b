"""Fused CPU kernels for decoding agree with the dequantizing path (up to bf16 rounding)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from slimformer.nn import WeightOnlyLinear
from slimformer.nn.grid import QuantScheme, quantize_weight
from slimformer.nn.weight_only_kernels import MAX_KERNEL_ROWS, build_kernel


def _layer(scheme, out_features=96, in_features=256, seed=0):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(out_features, in_features, generator=gen) * 0.05
    bias = torch.randn(out_features, generator=gen)
    return WeightOnlyLinear.from_quantized(quantize_weight(weight, scheme), bias)


KERNEL_SCHEMES = [
    QuantScheme(8, 0, symmetric=True),
    QuantScheme(4, 32),
    QuantScheme(4, 64),
    QuantScheme(4, 128, symmetric=True),
]


@pytest.mark.parametrize("scheme", KERNEL_SCHEMES, ids=str)
@pytest.mark.parametrize("shape", [(1, 256), (2, 3, 256)])
def test_kernel_matches_dequantized_path(scheme, shape):
    layer = _layer(scheme)
    assert build_kernel(layer.quantized_weight()) is not None
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    exact = F.linear(x, layer.dequantized_weight(), layer.bias)
    fused = layer(x)
    assert fused.shape == exact.shape and fused.dtype == x.dtype
    assert torch.allclose(fused, exact, rtol=0.02, atol=0.02 * exact.abs().max().item())


@pytest.mark.parametrize("scheme", [QuantScheme(3, 64), QuantScheme(8, 64), QuantScheme(4, 0)])
def test_schemes_without_a_kernel_use_the_exact_path(scheme):
    layer = _layer(scheme)
    assert build_kernel(layer.quantized_weight()) is None
    x = torch.randn(1, 256)
    assert torch.equal(layer(x), F.linear(x, layer.dequantized_weight(), layer.bias))


def test_many_rows_use_the_exact_path():
    layer = _layer(QuantScheme(4, 64))
    x = torch.randn(MAX_KERNEL_ROWS + 1, 256)
    assert torch.equal(layer(x), F.linear(x, layer.dequantized_weight(), layer.bias))


def test_kernel_can_be_switched_off():
    layer = _layer(QuantScheme(4, 64))
    layer.use_kernel = False
    x = torch.randn(1, 256)
    assert torch.equal(layer(x), F.linear(x, layer.dequantized_weight(), layer.bias))
