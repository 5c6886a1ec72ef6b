"""Sparse storage: exact encode/decode, bytes that fall with sparsity, bit-exact reloads."""

from __future__ import annotations

import pytest
import torch

import slimformer
from conftest import eager_outputs
from slimformer.methods.pruning.masks import keep_n_of_m
from slimformer.methods.pruning.settings import NMPattern
from slimformer.nn import SparseLinear, compressed_modules
from slimformer.nn.sparse_formats import (
    decode_bitmask,
    decode_n_of_m,
    encode_bitmask,
    encode_n_of_m,
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("cols", [16, 13])
def test_bitmask_round_trip_is_exact(dtype, cols):
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(7, cols, generator=gen).to(dtype)
    keep = torch.rand(7, cols, generator=gen) > 0.6
    bits, values = encode_bitmask(weight, keep)
    assert bits.dtype == torch.uint8 and bits.shape == (7, -(-cols // 8))
    assert values.numel() == int(keep.sum()) and values.dtype == dtype
    assert torch.equal(decode_bitmask(bits, values, cols), torch.where(keep, weight, 0))


@pytest.mark.parametrize(("n", "m"), [(2, 4), (4, 8), (1, 2), (3, 16)])
def test_n_of_m_round_trip_is_exact(n, m):
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(5, 4 * m, generator=gen)
    keep = keep_n_of_m(torch.rand(5, 4 * m, generator=gen), NMPattern(n, m))
    keep[0, :m] = False  # a group already all zero keeps "zeros": still exact
    values, indices = encode_n_of_m(weight, keep, n, m)
    assert values.shape == (5, 4 * n)
    assert torch.equal(decode_n_of_m(values, indices, n, m, 4 * m), torch.where(keep, weight, 0))


def test_n_of_m_refuses_a_group_with_too_many_weights():
    keep = torch.ones(2, 8, dtype=torch.bool)
    with pytest.raises(ValueError, match="more than 2 of 4"):
        encode_n_of_m(torch.randn(2, 8), keep, 2, 4)


def _state_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for k, t in module.state_dict().items() if k != "bias")


@pytest.mark.parametrize(("sparsity", "share"), [(0.5, 0.54), (0.9, 0.14)])
def test_stored_bytes_fall_with_sparsity(sparsity, share):
    weight = torch.randn(64, 256)
    keep = torch.rand(64, 256) >= sparsity
    module = SparseLinear.from_pruned(weight, keep, None)
    assert _state_bytes(module) <= share * weight.numel() * 4


def test_two_of_four_stores_half_the_values_and_one_bit_of_positions():
    weight = torch.randn(64, 256)
    module = SparseLinear.from_pruned(
        weight, keep_n_of_m(weight.abs(), NMPattern(2, 4)), None, "2:4"
    )
    assert module.values.shape == (64, 128) and module.indices.numel() == 64 * 256 // 8


@pytest.mark.parametrize(
    "config",
    [slimformer.SparseGPT(sparsity=0.5), slimformer.Wanda(pattern="2:4")],
    ids=["sparsegpt-50", "wanda-2of4"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_save_and_reload_are_bit_exact(tiny_llama_dir, minilm_tokenizer, tmp_path, config, dtype):
    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    slim.model.to(dtype)
    calib = torch.randint(
        0, len(minilm_tokenizer), (4, 32), generator=torch.Generator().manual_seed(0)
    )
    slimformer.prune_(slim, config, calibration=calib, progress=False)
    before = eager_outputs(slim, minilm_tokenizer)
    slimformer.save(slim, tmp_path / "pruned")
    again = slimformer.load(tmp_path / "pruned", runtime="eager")
    assert torch.equal(eager_outputs(again, minilm_tokenizer), before)
    modules = compressed_modules(again.model)
    assert len(modules) == 14 and all(isinstance(m, SparseLinear) for m in modules.values())
    for name, module in modules.items():
        original = slim.model.get_submodule(name)
        assert module.values.dtype == dtype
        assert torch.equal(module.dense_weight(), original.dense_weight())


def test_saved_folder_shrinks_by_the_pruned_weights(tiny_llama_dir, tmp_path):
    def file_bytes(folder):
        return sum(f.stat().st_size for f in folder.glob("*.safetensors"))

    dense = slimformer.load(tiny_llama_dir, runtime="eager")
    linear_bytes = sum(
        m.weight.numel() * 4
        for name, m in dense.model.named_modules()
        if isinstance(m, torch.nn.Linear) and "lm_head" not in name
    )
    slimformer.save(dense, tmp_path / "dense")
    slimformer.prune_(dense, slimformer.Magnitude(sparsity=0.5), progress=False)
    slimformer.save(dense, tmp_path / "sparse")
    saved = file_bytes(tmp_path / "dense") - file_bytes(tmp_path / "sparse")
    # half the values go; the mask costs 1 bit of every 32 (fp32) weights, plus headers
    assert saved >= 0.45 * linear_bytes


def test_cached_dense_weight_follows_dtype_moves():
    weight = torch.randn(8, 16)
    module = SparseLinear.from_pruned(weight, weight.abs() > 0.5, torch.randn(8))
    x = torch.randn(3, 16)
    first = module(x)
    assert torch.equal(
        first, torch.nn.functional.linear(x, weight * (weight.abs() > 0.5), module.bias)
    )
    module.to(torch.float64)
    assert module(x.double()).dtype == torch.float64
