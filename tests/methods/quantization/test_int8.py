"""Dynamic int8: the quantizer, the integer product, the module, and ``quantize_``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import slimformer
from slimformer.errors import SlimformerError
from slimformer.nn import Int8DynamicLinear, compressed_modules, module_class
from slimformer.nn.int8_linear import (
    QMAX,
    int8_matmul,
    quantize_per_channel,
    quantize_per_token,
)


@pytest.fixture()
def generator():
    return torch.Generator().manual_seed(0)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


# --- quantizers --------------------------------------------------------------------------


def test_per_channel_codes_and_error_bound(generator):
    weight = torch.randn(24, 40, generator=generator)
    weight[3] *= 100  # one loud row must not cost the others precision
    codes, scale = quantize_per_channel(weight)
    assert codes.dtype == torch.int8 and codes.shape == weight.shape
    assert scale.dtype == torch.float32 and scale.shape == (24,)
    assert codes.min() >= -QMAX and codes.max() <= QMAX
    assert torch.equal(codes.abs().amax(dim=1), torch.full((24,), QMAX, dtype=torch.int8))
    error = (codes.float() * scale[:, None] - weight).abs()
    assert (error <= scale[:, None] / 2 * (1 + 1e-5)).all()


def test_per_channel_zero_rows_stay_zero():
    codes, scale = quantize_per_channel(torch.zeros(3, 5))
    assert not codes.any() and (scale > 0).all()


def test_per_token_codes(generator):
    x = torch.randn(6, 10, generator=generator)
    codes, scale = quantize_per_token(x)
    assert codes.dtype == torch.int8 and scale.shape == (6, 1)
    assert codes.abs().max() <= QMAX
    assert ((codes.float() * scale - x).abs() <= scale / 2 * (1 + 1e-5)).all()


@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (5, 7, 3), (17, 64, 24), (3, 33, 5)])
def test_int8_matmul_is_the_exact_integer_product(generator, m, k, n):
    a = torch.randint(-QMAX, QMAX + 1, (m, k), generator=generator, dtype=torch.int8)
    b = torch.randint(-QMAX, QMAX + 1, (n, k), generator=generator, dtype=torch.int8)
    product = int8_matmul(a, b)
    assert product.dtype == torch.int32 and product.shape == (m, n)
    assert torch.equal(product.long(), a.long() @ b.long().t())


def test_int8_matmul_extremes_do_not_overflow():
    a = torch.full((2, 256), -QMAX, dtype=torch.int8)
    b = torch.full((3, 256), -QMAX, dtype=torch.int8)
    assert (int8_matmul(a, b) == QMAX * QMAX * 256).all()


# --- the module --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(7, 48), (2, 5, 48), (1, 1, 48)])
def test_from_linear_matches_fp32(generator, shape):
    linear = nn.Linear(48, 20)
    quantized = Int8DynamicLinear.from_linear(linear)
    x = torch.randn(*shape, generator=generator)
    with torch.no_grad():
        expected, actual = linear(x), quantized(x)
    assert actual.shape == expected.shape and actual.dtype == torch.float32
    assert relative_error(actual, expected) < 0.02


def test_from_linear_stores_int8_weights():
    linear = nn.Linear(16, 8)
    quantized = Int8DynamicLinear.from_linear(linear)
    codes, scale = quantize_per_channel(linear.weight)
    assert torch.equal(quantized.weight, codes)
    assert torch.equal(quantized.weight_scale, scale)
    assert torch.equal(quantized.bias, linear.bias.detach())
    assert quantized.bias.data_ptr() != linear.bias.data_ptr()
    assert list(quantized.state_dict()) == ["weight", "weight_scale", "bias"]
    assert not list(quantized.parameters())
    error = (quantized.dequantized_weight() - linear.weight).abs()
    assert (error <= scale[:, None] / 2 * (1 + 1e-5)).all()


def test_no_bias(generator):
    linear = nn.Linear(32, 12, bias=False)
    quantized = Int8DynamicLinear.from_linear(linear)
    assert quantized.bias is None
    assert list(quantized.state_dict()) == ["weight", "weight_scale"]
    assert quantized.spec() == {"in_features": 32, "out_features": 12, "bias": False}
    x = torch.randn(4, 32, generator=generator)
    with torch.no_grad():
        assert relative_error(quantized(x), linear(x)) < 0.02
    assert Int8DynamicLinear.from_spec(quantized.spec()).bias is None


def test_output_keeps_input_dtype(generator):
    quantized = Int8DynamicLinear.from_linear(nn.Linear(16, 4))
    x = torch.randn(3, 16, generator=generator, dtype=torch.bfloat16)
    assert quantized(x).dtype == torch.bfloat16


def test_spec_round_trip():
    quantized = Int8DynamicLinear.from_linear(nn.Linear(10, 6))
    spec = quantized.spec()
    assert spec == {"in_features": 10, "out_features": 6, "bias": True}
    empty = module_class(quantized.kind).from_spec(spec)
    assert type(empty) is Int8DynamicLinear
    assert {k: v.shape for k, v in empty.state_dict().items()} == {
        k: v.shape for k, v in quantized.state_dict().items()
    }
    assert {k: v.dtype for k, v in empty.state_dict().items()} == {
        k: v.dtype for k, v in quantized.state_dict().items()
    }
    empty.load_state_dict(quantized.state_dict())
    x = torch.randn(2, 10)
    assert torch.equal(empty(x), quantized(x))


def test_logical_weights():
    quantized = Int8DynamicLinear.from_linear(nn.Linear(10, 6))
    weights = quantized.logical_weights()
    assert [w is t for w, t in zip(weights, (quantized.weight, quantized.bias), strict=True)] == [
        True,
        True,
    ]
    assert sum(w.numel() for w in weights) == 10 * 6 + 6
    no_bias = Int8DynamicLinear.from_linear(nn.Linear(10, 6, bias=False))
    assert no_bias.logical_weights() == [no_bias.weight]


def test_unknown_kind_is_a_slimformer_error():
    with pytest.raises(SlimformerError, match=r"module kind 'int3_magic'.*upgrade"):
        module_class("int3_magic")


# --- quantize_ on a model ----------------------------------------------------------------

ENCODER_LINEARS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)


@pytest.fixture()
def bert_cls(tiny_bert_cls_dir):
    return slimformer.load(tiny_bert_cls_dir)


def test_quantize_default_parts(bert_cls, minilm_tokenizer):
    inputs = minilm_tokenizer(["a small test", "another one"], padding=True, return_tensors="pt")
    with torch.no_grad():
        before = bert_cls(**inputs).logits
    returned = slimformer.quantize_(bert_cls, slimformer.Int8Dynamic(), progress=False)
    assert returned is bert_cls
    expected = {f"bert.encoder.layer.{i}.{name}" for i in range(2) for name in ENCODER_LINEARS}
    assert set(compressed_modules(bert_cls.model)) == expected
    # the task head (pooler and classifier) stays fp32
    assert type(bert_cls.model.classifier) is nn.Linear
    assert type(bert_cls.model.bert.pooler.dense) is nn.Linear
    assert bert_cls.compression["methods"] == [
        {
            "method": "int8_dynamic",
            "version": 1,
            "parts": ["attention", "mlp", "other"],
            "include": [],
            "exclude": [],
        }
    ]
    # the adapter was refreshed: it no longer lists the replaced layers as linears
    assert set(bert_cls.adapter.linear_layers()) == {"bert.pooler.dense", "classifier"}
    with torch.no_grad():
        after = bert_cls(**inputs).logits
    assert relative_error(after, before) < 0.05


def test_quantize_include_and_exclude(bert_cls):
    config = slimformer.Int8Dynamic(
        include=["*.attention.*"], exclude=["*.attention.output.*", "bert.encoder.layer.1.*"]
    )
    slimformer.quantize_(bert_cls, config, progress=False)
    assert set(compressed_modules(bert_cls.model)) == {
        "bert.encoder.layer.0.attention.self.query",
        "bert.encoder.layer.0.attention.self.key",
        "bert.encoder.layer.0.attention.self.value",
    }


def test_quantize_head_when_asked(bert_cls):
    slimformer.quantize_(bert_cls, slimformer.Int8Dynamic(parts=["head"]), progress=False)
    assert set(compressed_modules(bert_cls.model)) == {"bert.pooler.dense", "classifier"}


def test_quantize_a_bare_module(tiny_bert_cls_dir):
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(tiny_bert_cls_dir)
    assert slimformer.quantize_(model, slimformer.Int8Dynamic(), progress=False) is model
    assert len(compressed_modules(model)) == 12


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (slimformer.Int8Dynamic(include=["*.nothing.*"]), r"pattern '\*\.nothing\.\*' matches no"),
        (slimformer.Int8Dynamic(exclude=["encoder.*"]), r"pattern 'encoder\.\*' matches no"),
        (
            slimformer.Int8Dynamic(parts=["embedding"]),
            r"no linear layer of .* is selected \(parts=\['embedding'\]\)",
        ),
    ],
)
def test_quantize_selection_errors(bert_cls, config, message):
    with pytest.raises(SlimformerError, match=message):
        slimformer.quantize_(bert_cls, config, progress=False)
    assert not compressed_modules(bert_cls.model)
    assert "methods" not in bert_cls.compression


def test_quantize_rejects_a_non_model():
    with pytest.raises(SlimformerError, match=r"expected a torch\.nn\.Module"):
        slimformer.quantize_("minilm", slimformer.Int8Dynamic())


def test_quantize_rejects_a_method_of_another_family(bert_cls, tiny_cls_jsonl):
    from slimformer.methods.finetune.finetune import Finetune

    with pytest.raises(SlimformerError, match="finetune is a training method, not quantization"):
        slimformer.quantize_(bert_cls, Finetune(dataset=str(tiny_cls_jsonl)))


def test_unknown_part_is_rejected_with_the_settings():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="parts"):
        slimformer.Int8Dynamic(parts=["atention"])


def test_quantize_generic_model(generator):
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    x = torch.randn(5, 8, generator=generator)
    with torch.no_grad():
        before = model(x)
    slimformer.quantize_(model, slimformer.Int8Dynamic(), progress=False)
    assert [type(m) for m in model] == [Int8DynamicLinear, nn.ReLU, Int8DynamicLinear]
    with torch.no_grad():
        assert relative_error(model(x), before) < 0.03
