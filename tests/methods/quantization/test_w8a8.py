"""Static int8 layers, naive W8A8 and SmoothQuant: accuracy, calibration, save and reload."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

import slimformer
from slimformer.errors import SlimformerError
from slimformer.methods.catalog import make_config
from slimformer.methods.quantization import W8A8, SmoothQuant
from slimformer.methods.quantization.smoothquant import smoothing_scale
from slimformer.nn import (
    InputScaled,
    Int8DynamicLinear,
    Int8StaticLinear,
    compressed_modules,
    module_class,
)
from slimformer.nn.int8_linear import QMAX, quantize_per_channel
from slimformer.nn.int8_static import input_scale_from_range
from slimformer.recipe import Recipe


@pytest.fixture()
def generator():
    return torch.Generator().manual_seed(0)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


def _windows(n: int, seed: int) -> torch.Tensor:
    return torch.randint(1000, 8000, (n, 24), generator=torch.Generator().manual_seed(seed))


CALIBRATION = _windows(6, seed=10)
HELD_OUT = _windows(3, seed=11)


def _outputs(slim, ids=HELD_OUT):
    with torch.no_grad():
        out = slim.model(input_ids=ids, attention_mask=torch.ones_like(ids))
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def _quantized(folder, config, prepare=None):
    slim = slimformer.load(folder, runtime="eager")
    if prepare is not None:
        prepare(slim)
    slimformer.quantize_(slim, config, calibration=CALIBRATION, progress=False)
    return slim


# --- the module ----------------------------------------------------------------------------


def test_input_scale_from_range():
    abs_max = torch.tensor([0.5, 2.54, 1.0])
    assert input_scale_from_range(abs_max).item() == pytest.approx(2.54 / QMAX)
    assert input_scale_from_range(abs_max, clip=0.5).item() == pytest.approx(1.27 / QMAX)
    assert input_scale_from_range(torch.zeros(4)).item() > 0


@pytest.mark.parametrize("shape", [(7, 48), (2, 5, 48), (1, 1, 48)])
def test_static_matches_fp32_within_the_calibrated_range(generator, shape):
    linear = nn.Linear(48, 20)
    x = torch.randn(*shape, generator=generator)
    quantized = Int8StaticLinear.from_linear(linear, input_scale_from_range(x.abs().amax()))
    with torch.no_grad():
        expected, actual = linear(x), quantized(x)
    assert actual.shape == expected.shape and actual.dtype == torch.float32
    assert relative_error(actual, expected) < 0.03


def test_static_clamps_beyond_the_calibrated_range(generator):
    linear = nn.Linear(32, 8)
    quantized = Int8StaticLinear.from_linear(linear, 1.0 / QMAX)  # range ±1
    assert quantized.input_range == pytest.approx(1.0)
    x = torch.randn(16, 32, generator=generator) * 4
    with torch.no_grad():
        assert torch.equal(quantized(x), quantized(x.clamp(-1.0, 1.0)))
        assert relative_error(quantized(x), linear(x)) > 0.2


def test_static_stores_int8_weights_and_one_scale():
    linear = nn.Linear(16, 8)
    quantized = Int8StaticLinear.from_linear(linear, torch.tensor(0.01))
    codes, scale = quantize_per_channel(linear.weight)
    assert torch.equal(quantized.weight, codes) and torch.equal(quantized.weight_scale, scale)
    assert quantized.input_scale.shape == () and quantized.input_scale.item() == pytest.approx(0.01)
    assert torch.equal(quantized.bias, linear.bias.detach())
    assert set(quantized.state_dict()) == {"weight", "weight_scale", "input_scale", "bias"}
    assert not list(quantized.parameters())
    assert quantized.prefers_compile


def test_static_spec_round_trip(generator):
    quantized = Int8StaticLinear.from_linear(nn.Linear(10, 6), 0.02)
    spec = quantized.spec()
    assert spec == {"in_features": 10, "out_features": 6, "bias": True}
    empty = module_class("int8_static_linear").from_spec(spec)
    assert type(empty) is Int8StaticLinear
    state = quantized.state_dict()
    assert {k: (v.shape, v.dtype) for k, v in empty.state_dict().items()} == {
        k: (v.shape, v.dtype) for k, v in state.items()
    }
    empty.load_state_dict(state)
    x = torch.randn(3, 10, generator=generator)
    assert torch.equal(empty(x), quantized(x))
    assert quantized.logical_weights() == [quantized.weight, quantized.bias]


def test_static_without_bias_and_in_bfloat16(generator):
    quantized = Int8StaticLinear.from_linear(nn.Linear(16, 4, bias=False), 0.03)
    assert quantized.bias is None and quantized.logical_weights() == [quantized.weight]
    assert Int8StaticLinear.from_spec(quantized.spec()).bias is None
    x = torch.randn(3, 16, generator=generator, dtype=torch.bfloat16)
    assert quantized(x).dtype == torch.bfloat16


def test_smoothing_scale_formula():
    act = torch.tensor([4.0, 1.0, 0.0])
    first = nn.Linear(3, 2, bias=False)
    second = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 0.25, 0.0], [-0.5, 0.0, 0.0]]))
        second.weight.copy_(torch.tensor([[0.5, -4.0, 0.0], [0.0, 0.0, 0.0]]))
    scale = smoothing_scale(act, [first, second], alpha=0.5)
    # max|W_:,j| over both consumers is [1, 4, 0]; both maxima are floored at 1e-5
    assert torch.allclose(scale, torch.tensor([2.0, 0.5, 1.0]))
    assert torch.equal(smoothing_scale(act, [first], alpha=0.0), 1 / torch.tensor([1, 0.25, 1e-5]))


# --- the methods on models -------------------------------------------------------------


def test_w8a8_per_tensor_calibrates_each_layer(tiny_llama_dir):
    reference = slimformer.load(tiny_llama_dir, runtime="eager")
    seen = []
    q_proj = reference.model.model.layers[0].self_attn.q_proj
    handle = q_proj.register_forward_pre_hook(lambda m, args: seen.append(args[0].abs().max()))
    _outputs(reference, CALIBRATION)
    handle.remove()

    slim = _quantized(tiny_llama_dir, W8A8(clip=0.5))
    modules = compressed_modules(slim.model)
    assert len(modules) == 14 and all(type(m) is Int8StaticLinear for m in modules.values())
    assert type(slim.model.lm_head) is nn.Linear
    first = slim.model.model.layers[0].self_attn.q_proj
    assert first.input_range == pytest.approx(0.5 * max(seen).item(), rel=1e-5)


def test_w8a8_per_token_needs_no_calibration(generator):
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    slimformer.quantize_(model, W8A8(activations="per_token"), progress=False)
    assert [type(m) for m in model] == [Int8DynamicLinear, nn.ReLU, Int8DynamicLinear]


def test_a_selected_head_is_calibrated_after_the_blocks(tiny_bert_cls_dir):
    slim = _quantized(tiny_bert_cls_dir, W8A8(parts=["attention", "mlp", "head"]))
    assert type(slim.model.classifier) is Int8StaticLinear
    assert type(slim.model.bert.pooler.dense) is Int8StaticLinear
    # the classifier reads the pooler's tanh: its calibrated range lies in (0, 1]
    assert 0 < slim.model.classifier.input_range <= 1.0


def test_smoothquant_leaves_partly_selected_groups_unsmoothed(tiny_llama_dir):
    original = slimformer.load(tiny_llama_dir, runtime="eager").model.model.layers[0]
    slim = _quantized(tiny_llama_dir, SmoothQuant(exclude=["*.k_proj"]))
    layer = slim.model.model.layers[0]
    assert torch.equal(layer.input_layernorm.weight, original.input_layernorm.weight)
    assert not torch.equal(
        layer.post_attention_layernorm.weight, original.post_attention_layernorm.weight
    )
    assert type(layer.self_attn.q_proj) is Int8DynamicLinear
    assert type(layer.self_attn.k_proj) is nn.Linear
    # grouped-query attention: o_proj's smoothing cannot fold into v, so it is explicit
    assert type(layer.self_attn.o_proj) is InputScaled
    assert type(layer.self_attn.o_proj.inner) is Int8DynamicLinear


def test_smoothquant_after_an_earlier_stage_compressed_a_producer(tiny_bert_cls_dir):
    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    fp = _outputs(slim)
    slimformer.quantize_(slim, slimformer.Int8Dynamic(include=["*.value"]), progress=False)
    slimformer.quantize_(slim, SmoothQuant(), calibration=CALIBRATION, progress=False)
    attention = slim.model.bert.encoder.layer[0].attention
    assert type(attention.self.value) is Int8DynamicLinear  # int8 codes: cannot absorb 1/s
    assert type(attention.output.dense) is InputScaled  # so o's scale is applied explicitly
    assert relative_error(_outputs(slim), fp) < 0.1


CONFIGS = [
    W8A8(),
    W8A8(activations="per_token"),
    SmoothQuant(),
    SmoothQuant(activations="per_tensor", alpha=0.7),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.method}-{c.activations}")
@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_bert_cls_dir"])
def test_save_and_reload_is_bit_identical(fixture, config, request, tmp_path):
    folder = request.getfixturevalue(fixture)
    fp = _outputs(slimformer.load(folder, runtime="eager"))
    slim = _quantized(folder, config)
    expected = _outputs(slim)
    assert relative_error(expected, fp) < 0.1
    slimformer.save(slim, tmp_path / "q")
    again = slimformer.load(tmp_path / "q", runtime="eager")
    assert {n: type(m) for n, m in compressed_modules(again.model).items()} == {
        n: type(m) for n, m in compressed_modules(slim.model).items()
    }
    assert torch.equal(_outputs(again), expected)


def _outlier_channels(slim) -> None:
    """Make input channels 0-3 of every norm ~30x louder: the outliers of real LLMs."""
    with torch.no_grad():
        for layer in slim.adapter.layers():
            for norm in layer.norms.values():
                norm.weight[:4] *= 30.0


def test_smoothquant_static_range_is_that_of_the_smoothed_input(tiny_llama_dir):
    slim = _quantized(tiny_llama_dir, SmoothQuant(activations="per_tensor"), _outlier_channels)
    first = slim.model.model.layers[0]
    assert torch.all(first.input_layernorm.weight[:4] < 30.0)  # the outliers moved into q, k, v
    seen = []
    q_proj = first.self_attn.q_proj
    handle = q_proj.register_forward_pre_hook(lambda m, args: seen.append(args[0].abs().max()))
    _outputs(slim, CALIBRATION)
    handle.remove()
    # the first block's input is the embedding: calibration saw exactly what inference sees
    assert q_proj.input_range == pytest.approx(max(seen).item(), rel=1e-4)


@pytest.mark.parametrize("activations", ["per_tensor", "per_token"])
def test_smoothquant_beats_naive_w8a8_on_activation_outliers(tiny_llama_dir, activations):
    reference = slimformer.load(tiny_llama_dir, runtime="eager")
    _outlier_channels(reference)
    fp = _outputs(reference)

    def error(config) -> float:
        slim = _quantized(tiny_llama_dir, config, prepare=_outlier_channels)
        return ((_outputs(slim) - fp) ** 2).mean().item()

    naive = error(W8A8(activations=activations))
    smooth = error(SmoothQuant(activations=activations))
    assert smooth < naive


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_alpha_out_of_range_is_a_one_line_error(alpha):
    with pytest.raises(SlimformerError, match=r"smoothquant: setting 'alpha'") as info:
        make_config("smoothquant", {"alpha": alpha})
    assert "\n" not in str(info.value)
    with pytest.raises(SlimformerError, match=r"stage 1: smoothquant: setting 'alpha'"):
        Recipe.from_yaml(f"stages:\n  - method: smoothquant\n    alpha: {alpha}\n")
    with pytest.raises(ValidationError, match="alpha"):
        SmoothQuant(alpha=alpha)


def test_settings_defaults_and_errors():
    assert (SmoothQuant().alpha, SmoothQuant().activations) == (0.5, "per_token")
    assert (W8A8().activations, W8A8().clip) == ("per_tensor", 1.0)
    assert SmoothQuant(alpha=0).alpha == 0 and SmoothQuant(alpha=1).alpha == 1
    with pytest.raises(SlimformerError, match=r"w8a8: setting 'activations'"):
        make_config("w8a8", {"activations": "per_channel"})
    with pytest.raises(SlimformerError, match=r"w8a8: setting 'clip'"):
        make_config("w8a8", {"clip": 0})
