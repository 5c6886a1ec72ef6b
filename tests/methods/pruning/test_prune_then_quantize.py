"""Pruning composes with quantization: sparse layers take 8-bit values and stay sparse."""

from __future__ import annotations

import math

import pytest
import torch

import slimformer
from conftest import eager_outputs
from slimformer.errors import SlimformerError
from slimformer.methods.pruning.masks import keep_n_of_m
from slimformer.methods.pruning.settings import NMPattern
from slimformer.nn import SparseLinear, compressed_modules
from slimformer.nn.grid import QuantScheme, quantize_weight
from slimformer.pipeline import MeasureOptions

W8 = {"method": "rtn", "bits": 8, "group_size": 0, "symmetric": True}


def _stored_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for k, t in module.state_dict().items() if k != "bias")


@pytest.mark.parametrize("pattern", ["2:4", "unstructured"])
def test_quantized_values_keep_the_mask_and_round_within_half_a_step(pattern):
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(16, 64, generator=gen)
    if pattern == "2:4":
        keep = keep_n_of_m(weight.abs(), NMPattern(2, 4))
    else:
        keep = torch.rand(16, 64, generator=gen) > 0.5
    sparse = SparseLinear.from_pruned(weight, keep, torch.randn(16, generator=gen), pattern)
    qw = quantize_weight(sparse.dense_weight(), QuantScheme(8, 0, True))
    quantized = sparse.with_quantized_values(qw)

    assert quantized.values.dtype == torch.int8 and quantized.scales.shape == (16,)
    dense = quantized.dense_weight()
    assert torch.equal(dense == 0, ~keep | (qw.dequantize() == 0))
    step = quantized.scales.float()[:, None]
    assert bool(((dense - torch.where(keep, weight, 0)).abs() <= step / 2 + 1e-7).all())
    assert torch.equal(quantized.bias, sparse.bias)


def test_two_of_four_w8_costs_five_bits_a_weight():
    weight = torch.randn(64, 256)
    sparse = SparseLinear.from_pruned(
        weight, keep_n_of_m(weight.abs(), NMPattern(2, 4)), None, "2:4"
    )
    quantized = sparse.with_quantized_values(
        quantize_weight(sparse.dense_weight(), QuantScheme(8, 0, True))
    )
    scale_bytes = 64 * 2
    assert _stored_bytes(quantized) == weight.numel() * 5 // 8 + scale_bytes


def test_sparse_values_refuse_other_grids():
    weight = torch.randn(4, 8)
    sparse = SparseLinear.from_pruned(weight, weight.abs() > 0.3, None)
    with pytest.raises(ValueError, match="8-bit symmetric"):
        sparse.with_quantized_values(quantize_weight(weight, QuantScheme(4, 0, True)))


def _calibration(tokenizer):
    return torch.randint(0, len(tokenizer), (4, 32), generator=torch.Generator().manual_seed(0))


def test_prune_two_of_four_then_w8_saves_both_and_reloads(
    tiny_llama_dir, minilm_tokenizer, tmp_path
):
    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    calib = _calibration(minilm_tokenizer)
    slimformer.prune_(slim, slimformer.Wanda(pattern="2:4"), calibration=calib, progress=False)
    pruned = {n: m.dense_weight() for n, m in compressed_modules(slim.model).items()}
    pruned_out = eager_outputs(slim, minilm_tokenizer)
    slimformer.quantize_(slim, slimformer.RTN(**{k: v for k, v in W8.items() if k != "method"}))

    modules = compressed_modules(slim.model)
    assert modules.keys() == pruned.keys()
    for name, module in modules.items():
        assert isinstance(module, SparseLinear) and module.value_bits == 8
        # same zeros (a kept weight may round to zero), every group of 4 still keeps 2 at most
        zeros = module.dense_weight() == 0
        assert bool(zeros[pruned[name] == 0].all())
        assert int((~zeros).reshape(-1, 4).sum(dim=1).max()) <= 2
    quantized_out = eager_outputs(slim, minilm_tokenizer)
    assert torch.allclose(quantized_out, pruned_out, atol=0.05, rtol=0.05)

    slimformer.save(slim, tmp_path / "both")
    again = slimformer.load(tmp_path / "both", runtime="eager")
    assert torch.equal(eager_outputs(again, minilm_tokenizer), quantized_out)
    assert all(m.value_bits == 8 for m in compressed_modules(again.model).values())


def test_prune_then_quantize_recipe_through_compress(tiny_llama_dir, tiny_txt, tmp_path):
    calibration = {"dataset": str(tiny_txt), "samples": 4, "length": 32}
    recipe = {
        "stages": [
            {"method": "sparsegpt", "pattern": "2:4", "calibration": calibration},
            W8,
        ]
    }
    report = slimformer.compress(
        tiny_llama_dir,
        recipe,
        tmp_path / "out",
        eval=str(tiny_txt),
        eval_options={"max_tokens": 256, "window": 32},
        measure=MeasureOptions(shapes=((1, 8),), runs=1, warmup=0),
        progress=False,
        runtime="eager",
    )
    assert [stage["stage"] for stage in report["stages"]] == ["sparsegpt", "rtn"]
    assert math.isfinite(report["after"]["eval"]["value"])
    # 2:4 W8: 5 bits of every 32, plus a scale a row
    assert report["comparison"]["linear_weight_disk_ratio"] < 0.2
    reloaded = slimformer.load(tmp_path / "out", runtime="eager")
    assert all(isinstance(m, SparseLinear) for m in compressed_modules(reloaded.model).values())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (slimformer.RTN(bits=4, group_size=32), "8-bit per-channel"),
        (slimformer.GPTQ(bits=8, group_size=0), "cannot compress sparse layers"),
        (slimformer.Int8Dynamic(), "cannot compress sparse layers"),
    ],
    ids=["rtn-w4", "gptq", "int8-dynamic"],
)
def test_quantizers_that_cannot_take_pruned_layers_say_so(
    tiny_llama_dir, minilm_tokenizer, config, message
):
    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    slimformer.prune_(slim, slimformer.Magnitude(sparsity=0.5), progress=False)
    before = {n: m.values.clone() for n, m in compressed_modules(slim.model).items()}
    calib = _calibration(minilm_tokenizer)
    with pytest.raises(SlimformerError, match=message):
        slimformer.quantize_(slim, config, calibration=calib, progress=False)
    after = compressed_modules(slim.model)
    assert all(torch.equal(after[n].values, v) for n, v in before.items())
