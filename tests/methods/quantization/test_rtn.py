"""Weight-only storage (WeightOnlyLinear) and the round-to-nearest method on real models."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from safetensors import safe_open
from torch import nn

import slimformer
from conftest import eager_outputs
from slimformer.errors import SlimformerError
from slimformer.methods.catalog import make_config
from slimformer.methods.quantization import RTN
from slimformer.nn import WeightOnlyLinear, compressed_modules, module_class
from slimformer.nn.grid import QuantScheme, quantize_weight
from slimformer.nn.quantized_linear import bits_per_weight
from slimformer.recipe import Recipe


@pytest.fixture()
def generator():
    return torch.Generator().manual_seed(0)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


def make_layer(
    generator, in_features=128, out_features=24, bits=4, group_size=32, symmetric=False, bias=True
) -> tuple[WeightOnlyLinear, torch.Tensor]:
    """A WeightOnlyLinear from a random weight, and the weight its codes stand for."""
    weight = torch.randn(out_features, in_features, generator=generator) * 0.1
    bias_tensor = torch.randn(out_features, generator=generator) if bias else None
    qw = quantize_weight(weight, QuantScheme(bits, group_size, symmetric))
    return WeightOnlyLinear.from_quantized(qw, bias_tensor), qw.dequantize()


# --- the module --------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("symmetric", [False, True])
def test_forward_is_f_linear_with_the_dequantized_weight(generator, bits, symmetric):
    layer, dequantized = make_layer(generator, bits=bits, symmetric=symmetric)
    assert torch.equal(layer.dequantized_weight(), dequantized)
    x = torch.randn(2, 5, 128, generator=generator)
    assert torch.equal(layer(x), F.linear(x, dequantized, layer.bias))


def test_no_bias_and_input_dtype(generator):
    layer, dequantized = make_layer(generator, bias=False, group_size=0)
    assert layer.bias is None and "bias" not in layer.state_dict()
    x = torch.randn(3, 128, generator=generator)
    assert torch.equal(layer(x), F.linear(x, dequantized))
    half = layer(x.bfloat16())
    assert half.dtype == torch.bfloat16
    assert relative_error(half.float(), F.linear(x, dequantized)) < 0.02


def test_storage_layout(generator):
    layer, _ = make_layer(generator, in_features=192, out_features=8, bits=3, group_size=64)
    assert {k: (v.dtype, tuple(v.shape)) for k, v in layer.state_dict().items()} == {
        "qweight": (torch.uint8, (8, 72)),  # 192 codes * 3 bits = 72 bytes a row
        "scales": (torch.float16, (8, 3)),
        "zeros": (torch.uint8, (8, 2)),  # 3 zero points * 3 bits = 2 bytes a row
        "bias": (torch.float32, (8,)),
    }
    symmetric, _ = make_layer(generator, in_features=192, bits=4, group_size=64, symmetric=True)
    assert list(symmetric.state_dict()) == ["qweight", "scales", "bias"]
    assert not list(layer.parameters())


def test_spec_round_trip(generator):
    layer, _ = make_layer(generator, bits=3, group_size=64, symmetric=True, bias=False)
    spec = layer.spec()
    assert spec == {
        "in_features": 128,
        "out_features": 24,
        "bits": 3,
        "group_size": 64,
        "symmetric": True,
        "bias": False,
    }
    empty = module_class(layer.kind).from_spec(json.loads(json.dumps(spec)))
    assert type(empty) is WeightOnlyLinear and layer.kind == "weight_only_linear"
    state = layer.state_dict()
    assert {k: (v.dtype, v.shape) for k, v in empty.state_dict().items()} == {
        k: (v.dtype, v.shape) for k, v in state.items()
    }
    empty.load_state_dict(state)
    x = torch.randn(4, 128, generator=generator)
    assert torch.equal(empty(x), layer(x))


def test_from_spec_rejects_an_impossible_scheme():
    with pytest.raises(SlimformerError, match="does not divide the 100 input features"):
        WeightOnlyLinear(100, 8, bits=4, group_size=64)


def test_logical_weights_count_every_weight(generator):
    layer, dequantized = make_layer(generator)
    weights = layer.logical_weights()
    assert sum(w.numel() for w in weights) == 128 * 24 + 24
    assert torch.equal(weights[0], dequantized) and weights[1] is layer.bias


@pytest.mark.parametrize(
    ("bits", "in_features", "expected"),
    [
        (4, 256, 4 + 16 / 64 + 4 / 64),
        (3, 256, 3 + 16 / 64 + 3 / 64 + 1 / 64),  # 4 zero points of 3 bits round up to 2 bytes
        (4, 64, 4 + 16 / 64 + 8 / 64),  # one zero point still takes a whole byte
        (3, 512, 3 + 16 / 64 + 3 / 64),
    ],
)
def test_bits_per_weight_g64(generator, bits, in_features, expected):
    layer, _ = make_layer(generator, in_features=in_features, bits=bits, group_size=64)
    measured = bits_per_weight(layer)
    assert measured == pytest.approx(expected)
    assert measured <= bits + 0.6


def test_bits_per_weight_of_other_modules():
    assert bits_per_weight(nn.Linear(64, 8)) == 32
    assert bits_per_weight(WeightOnlyLinear(64, 8, 4, 0, symmetric=True)) == 4 + 16 / 64


# --- RTN on models -----------------------------------------------------------------------


def rtn_error(model_dir, tokenizer, config: RTN) -> float:
    slim = slimformer.load(model_dir)
    before = eager_outputs(slim, tokenizer)
    slimformer.quantize_(slim, config, progress=False)
    return relative_error(eager_outputs(slim, tokenizer), before)


def test_rtn_8_bit_is_close_and_4_bit_is_further(tiny_bert_cls_dir, minilm_tokenizer):
    eight = rtn_error(tiny_bert_cls_dir, minilm_tokenizer, RTN(bits=8, group_size=64))
    four = rtn_error(tiny_bert_cls_dir, minilm_tokenizer, RTN(bits=4, group_size=64))
    assert eight < 0.01
    assert four > eight


def test_rtn_replaces_the_selected_layers(tiny_llama_dir):
    slim = slimformer.load(tiny_llama_dir)
    slimformer.quantize_(slim, RTN(bits=4, group_size=64), progress=False)
    modules = compressed_modules(slim.model)
    assert len(modules) == 2 * 7 and "lm_head" not in modules
    assert all(type(m) is WeightOnlyLinear for m in modules.values())
    assert all(bits_per_weight(m) <= 4.6 for m in modules.values())
    assert slim.compression["methods"] == [
        {
            "method": "rtn",
            "version": 1,
            "bits": 4,
            "group_size": 64,
            "symmetric": False,
            "mse_clip": False,
            "parts": ["attention", "mlp", "other"],
            "include": [],
            "exclude": [],
        }
    ]


def test_rtn_uses_the_grid(tiny_llama_dir):
    slim = slimformer.load(tiny_llama_dir)
    name = "model.layers.1.mlp.down_proj"
    weight = slim.model.get_submodule(name).weight.detach().clone()
    scheme = QuantScheme(3, 64, symmetric=True)
    config = RTN(bits=3, group_size=64, symmetric=True, include=[name])
    slimformer.quantize_(slim, config, progress=False)
    expected = quantize_weight(weight, scheme).dequantize()
    assert torch.equal(slim.model.get_submodule(name).dequantized_weight(), expected)


def test_mse_clip_does_not_raise_the_weight_error(tiny_llama_dir):
    name = "model.layers.0.mlp.up_proj"

    def weight_error(mse_clip: bool) -> float:
        slim = slimformer.load(tiny_llama_dir)
        weight = slim.model.get_submodule(name).weight.detach().clone()
        config = RTN(bits=3, group_size=32, mse_clip=mse_clip, include=[name])
        slimformer.quantize_(slim, config, progress=False)
        error = slim.model.get_submodule(name).dequantized_weight() - weight
        return error.abs().pow(2.4).sum().item()

    assert weight_error(True) <= weight_error(False)


@pytest.mark.parametrize(
    ("fixture", "config"),
    [
        ("tiny_bert_cls_dir", RTN(bits=4, group_size=64)),
        ("tiny_bert_cls_dir", RTN(bits=3, group_size=0, symmetric=True, mse_clip=True)),
        ("tiny_llama_dir", RTN(bits=4, group_size=32)),
        ("tiny_llama_dir", RTN(bits=2, group_size=64, parts=["attention", "mlp", "head"])),
    ],
    ids=["bert-w4g64", "bert-w3-sym-clip", "llama-w4g32", "llama-w2g64-head"],
)
def test_save_and_reload_is_bit_exact(request, minilm_tokenizer, tmp_path, fixture, config):
    slim = slimformer.load(request.getfixturevalue(fixture))
    slimformer.quantize_(slim, config, progress=False)
    expected = eager_outputs(slim, minilm_tokenizer)

    out = slimformer.save(slim, tmp_path / "rtn")
    reloaded = slimformer.load(out)
    assert set(compressed_modules(reloaded.model)) == set(compressed_modules(slim.model))
    assert torch.equal(eager_outputs(reloaded, minilm_tokenizer), expected)

    meta = json.loads((out / "config.json").read_text())["slimformer"]
    assert meta["quant_method"] == "weight_only_linear"
    assert meta["methods"] == [config.to_dict()]
    with safe_open(out / "model.safetensors", "pt") as handle:
        dtypes = {key: handle.get_slice(key).get_dtype() for key in handle.keys()}  # noqa: SIM118
    for name in meta["modules"]:
        assert dtypes[f"{name}.qweight"] == "U8" and dtypes[f"{name}.scales"] == "F16"


def test_an_impossible_group_size_leaves_the_model_untouched(tiny_llama_dir):
    slim = slimformer.load(tiny_llama_dir)
    with pytest.raises(SlimformerError) as info:
        slimformer.quantize_(slim, RTN(group_size=128), progress=False)
    message = str(info.value)
    assert "group_size 128 does not divide the 64 input features of model.layers.0" in message
    assert "e.g. 64" in message
    assert not compressed_modules(slim.model) and "methods" not in slim.compression


def test_validation_happens_before_any_layer_changes(generator):
    model = nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 8))
    with pytest.raises(SlimformerError, match=r"does not divide the 64 input features of 2"):
        slimformer.quantize_(model, RTN(group_size=128), progress=False)
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU, nn.Linear]
    slimformer.quantize_(model, RTN(group_size=64, bits=8), progress=False)
    assert [type(m) for m in model] == [WeightOnlyLinear, nn.ReLU, WeightOnlyLinear]


# --- the config --------------------------------------------------------------------------


def test_recipe_round_trip():
    recipe = Recipe.from_yaml(
        "stages:\n  - method: rtn\n    bits: 3\n    group_size: 64\n    mse_clip: true\n"
    )
    (stage,) = recipe.stages
    assert stage == RTN(bits=3, group_size=64, mse_clip=True)
    assert Recipe.from_yaml(recipe.to_yaml()) == recipe
    assert make_config("rtn", {}) == RTN()
    assert RTN().scheme() == QuantScheme(4, 128, False)


@pytest.mark.parametrize(
    ("settings", "match"),
    [({"bits": 5}, "bits"), ({"group_size": -1}, "group_size"), ({"parts": ["mpl"]}, "parts")],
)
def test_bad_settings_are_rejected(settings, match):
    with pytest.raises(ValidationError, match=match):
        RTN(**settings)
    with pytest.raises(SlimformerError, match=rf"rtn: setting '{match}"):
        make_config("rtn", settings)
