"""GPT-2 through its adapter: Conv1D layers become nn.Linear, every method runs, saves reload."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import GPT2LMHeadModel, GPT2Model
from transformers.pytorch_utils import Conv1D

import slimformer
from slimformer.arch import GPT2Adapter, OutputRows, get_adapter
from slimformer.methods.quantization.folding import absorber, apply_input_scale
from slimformer.nn import InputScaled, Int8DynamicLinear, WeightOnlyLinear

IDS = torch.randint(1000, 8000, (2, 16), generator=torch.Generator().manual_seed(7))
#: The four projections of every block, where GPT-2 has its Conv1D layers.
PROJECTIONS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


@pytest.fixture(scope="module")
def calib(minilm_tokenizer):
    return slimformer.calibration_windows(minilm_tokenizer, "wiki", n=4, length=32)


def _logits(model: nn.Module, ids: torch.Tensor = IDS) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def _hf(folder) -> GPT2LMHeadModel:
    """The model as plain transformers loads it: Conv1D layers, untouched by slimformer."""
    return GPT2LMHeadModel.from_pretrained(folder).eval()


# -- the parts ----------------------------------------------------------------------------


def test_adapter_describes_the_parts(tiny_gpt2_dir):
    slim = slimformer.load(tiny_gpt2_dir, runtime="eager")
    adapter, model = slim.adapter, slim.model
    assert type(adapter) is GPT2Adapter
    assert adapter.describe() == {
        "family": "gpt2",
        "num_layers": 2,
        "num_heads": 4,
        "num_kv_heads": 4,
        "head_dim": 16,
    }
    block = model.transformer.h[1]
    layer = adapter.layers()[1]
    att, mlp = layer.attention, layer.mlp
    assert layer.module is block and att.module is block.attn and mlp.module is block.mlp
    assert att.q is att.k is att.v is block.attn.c_attn  # fused: rows are q, k, v
    assert att.o is block.attn.c_proj
    assert (mlp.up, mlp.down, mlp.gate) == (block.mlp.c_fc, block.mlp.c_proj, None)
    assert layer.norms == {"attention_norm": block.ln_1, "mlp_norm": block.ln_2}
    assert all(type(m) is nn.Linear for m in (att.q, att.o, mlp.up, mlp.down))
    assert (att.q.in_features, att.q.out_features) == (64, 192)
    assert adapter.layer_stack() is model.transformer.h
    assert adapter.head() is model.lm_head
    assert model.lm_head.weight is model.transformer.wte.weight  # still tied
    assert adapter.embeddings() == {
        "transformer.wte": model.transformer.wte,
        "transformer.wpe": model.transformer.wpe,
    }
    assert len(adapter.linear_layers()) == 2 * 4 + 1


@pytest.mark.parametrize(
    ("name", "part"),
    [
        ("transformer.h.0.attn.c_attn", "attention"),
        ("transformer.h.1.attn.c_proj", "attention"),
        ("transformer.h.0.mlp.c_fc", "mlp"),
        ("transformer.h.1.mlp.c_proj", "mlp"),
        ("transformer.wte", "embedding"),
        ("transformer.wpe", "embedding"),
        ("lm_head", "head"),
        ("transformer.ln_f", "other"),
    ],
)
def test_part_of(tiny_gpt2_dir, name, part):
    slim = slimformer.load(tiny_gpt2_dir, runtime="eager")
    assert slim.adapter.part_of(name) == part
    assert slim.adapter.layer_index_of(name) == (int(name.split(".")[2]) if ".h." in name else None)


def test_bare_gpt2_model(tiny_gpt2_dir):
    model = GPT2Model.from_pretrained(tiny_gpt2_dir).eval()
    adapter = get_adapter(model)
    assert type(adapter) is GPT2Adapter and adapter.head() is None
    assert adapter.embeddings() == {"wte": model.wte, "wpe": model.wpe}
    assert adapter.linear_layers() == {}  # Conv1D until prepared
    adapter.prepare()
    assert sorted(adapter.linear_layers()) == sorted(
        f"h.{i}.{p}" for i in range(2) for p in PROJECTIONS
    )


# -- Conv1D to nn.Linear and back -----------------------------------------------------------


def test_prepare_swaps_conv1d_for_equal_linears(tiny_gpt2_dir):
    model = _hf(tiny_gpt2_dir)
    original = {key: value.clone() for key, value in model.state_dict().items()}
    expected = _logits(model)
    adapter = get_adapter(model)
    adapter.prepare()
    assert not any(isinstance(m, Conv1D) for m in model.modules())
    c_fc = model.transformer.h[0].mlp.c_fc
    assert torch.equal(c_fc.weight, original["transformer.h.0.mlp.c_fc.weight"].T)
    assert torch.equal(c_fc.bias, original["transformer.h.0.mlp.c_fc.bias"])
    assert torch.allclose(_logits(model), expected, rtol=0, atol=1e-6)
    before = list(model.modules())
    adapter.prepare()  # idempotent: nothing left to swap
    assert list(model.modules()) == before
    saved = adapter.state_dict_to_save()  # exactly GPT-2's own layout again
    assert saved.keys() == original.keys()
    assert all(torch.equal(saved[key], original[key]) for key in original)


def test_uncompressed_save_loads_in_plain_transformers(tiny_gpt2_dir, tmp_path):
    expected = _logits(_hf(tiny_gpt2_dir))
    slim = slimformer.load(tiny_gpt2_dir, runtime="eager")
    slimformer.save(slim, tmp_path / "plain")
    on_disk = load_file(tmp_path / "plain" / "model.safetensors")
    assert on_disk["transformer.h.0.attn.c_attn.weight"].shape == (64, 192)  # Conv1D [in, out]
    assert torch.allclose(_logits(_hf(tmp_path / "plain")), expected, rtol=0, atol=1e-6)
    again = slimformer.load(tmp_path / "plain", runtime="eager")
    assert type(again.model.transformer.h[0].attn.c_proj) is nn.Linear
    assert torch.allclose(_logits(again.model), expected, rtol=0, atol=1e-6)


# -- every method ---------------------------------------------------------------------------

METHODS = [
    slimformer.Int8Dynamic(),
    slimformer.RTN(bits=4, group_size=32),
    slimformer.GPTQ(bits=4, group_size=32),
    slimformer.AWQ(bits=4, group_size=32, grid=4),
    slimformer.W8A8(),
    slimformer.SmoothQuant(),
    slimformer.MixedPrecision(average_bits=5.0, choices=[4, 8], group_size=32),
]


@pytest.mark.parametrize("config", METHODS, ids=lambda config: config.method)
def test_every_method_quantizes_saves_and_reloads(tiny_gpt2_dir, calib, config, tmp_path):
    slim = slimformer.load(tiny_gpt2_dir, runtime="eager")
    reference = _logits(slim.model)
    slimformer.quantize_(slim, config, calibration=calib, progress=False)
    stack = slim.model.transformer.h
    assert not any(type(m) is nn.Linear for m in stack.modules())  # all 8 projections done
    assert type(slim.model.lm_head) is nn.Linear  # the head stays float by default
    actual = _logits(slim.model)
    error = ((actual - reference).norm() / reference.norm()).item()
    print(f"gpt2 {config.method}: relative logits error {error:.2e}")
    assert error < 0.05
    slimformer.save(slim, tmp_path / config.method)
    again = slimformer.load(tmp_path / config.method, runtime="eager")
    assert torch.equal(_logits(again.model), actual)


def test_float_layers_of_a_quantized_model_are_saved_as_conv1d(tiny_gpt2_dir, tmp_path):
    slim = slimformer.load(tiny_gpt2_dir, runtime="eager")
    config = slimformer.RTN(bits=4, group_size=32, exclude=["*.mlp.c_fc"])
    slimformer.quantize_(slim, config, progress=False)
    assert type(slim.model.transformer.h[0].mlp.c_fc) is nn.Linear
    expected = _logits(slim.model)
    slimformer.save(slim, tmp_path / "rtn")
    on_disk = load_file(tmp_path / "rtn" / "model.safetensors")
    assert on_disk["transformer.h.0.mlp.c_fc.weight"].shape == (64, 256)  # Conv1D [in, out]
    assert "transformer.h.0.mlp.c_proj.weight" not in on_disk  # quantized: its own format
    again = slimformer.load(tmp_path / "rtn", runtime="eager")
    assert isinstance(again.model.transformer.h[0].mlp.c_proj, WeightOnlyLinear)
    assert torch.equal(_logits(again.model), expected)


# -- folding scales (AWQ, SmoothQuant) --------------------------------------------------------


def _scale_every_group(slim, seed: int = 0) -> None:
    """Random scales on every group with float consumers, folded as AWQ/SmoothQuant do."""
    gen = torch.Generator().manual_seed(seed)
    for layer in slim.adapter.layers():
        for group in slim.adapter.scale_groups(layer):
            if not all(c.weight.is_floating_point() for c in group.consumers):
                continue
            features = group.consumers[0].weight.shape[1]
            apply_input_scale(slim.model, group, torch.rand(features, generator=gen) * 3 + 0.2)
        slim.refresh_adapter()


def _wrapped(slim) -> list[str]:
    return [name for name, m in slim.model.named_modules() if isinstance(m, InputScaled)]


def test_scales_fold_into_layernorms_and_the_v_rows(tiny_gpt2_dir):
    slim = slimformer.load(tiny_gpt2_dir, runtime="eager")
    block = slim.model.transformer.h[0]
    ln_bias, q_bias = block.ln_1.bias.clone(), block.attn.c_attn.bias[:64].clone()
    v_bias = block.attn.c_attn.bias[128:].clone()
    expected = _logits(slim.model)
    _scale_every_group(slim)
    assert torch.allclose(_logits(slim.model), expected, atol=1e-4, rtol=1e-4)
    assert not torch.equal(block.ln_1.bias, ln_bias)  # LayerNorm bias takes the scale too
    assert torch.equal(block.attn.c_attn.bias[:64], q_bias)  # q rows: not the v scale's
    assert not torch.equal(block.attn.c_attn.bias[128:], v_bias)
    # only the MLP's c_proj (a GELU before it) needs an explicit scale
    assert _wrapped(slim) == [f"transformer.h.{i}.mlp.c_proj" for i in range(2)]


def test_compressed_c_attn_makes_the_attention_out_scale_explicit(tiny_gpt2_dir):
    slim = slimformer.load(tiny_gpt2_dir, runtime="eager")
    slimformer.quantize_(slim, slimformer.Int8Dynamic(include=["*.attn.c_attn"]), progress=False)
    c_attn = slim.model.transformer.h[0].attn.c_attn
    assert absorber(OutputRows(c_attn, 128, 192)) is None
    expected = _logits(slim.model)
    _scale_every_group(slim)
    assert torch.allclose(_logits(slim.model), expected, atol=1e-4, rtol=1e-4)
    assert "transformer.h.0.attn.c_proj" in _wrapped(slim)


def test_output_rows_absorb_through_a_wrapper():
    linear = nn.Linear(4, 12)
    rows = absorber(OutputRows(InputScaled(linear, torch.ones(4)), 8, 12))
    assert isinstance(rows, OutputRows) and rows.linear is linear
    assert rows.weight.shape == (4, 4) and rows.weight.data_ptr() == linear.weight[8:].data_ptr()
    assert absorber(OutputRows(Int8DynamicLinear.from_linear(linear), 8, 12)) is None


def test_awq_on_outlier_channels_folds_and_reloads(tiny_gpt2_dir, calib, tmp_path):
    slim = slimformer.load(tiny_gpt2_dir, runtime="eager")
    with torch.no_grad():  # salient input channels, so the search surely picks scales
        for layer in slim.adapter.layers():
            for norm in layer.norms.values():
                norm.weight[:4] *= 20.0
    ln_1 = slim.model.transformer.h[0].ln_1.weight.clone()
    config = slimformer.AWQ(bits=4, group_size=32, grid=4)
    slimformer.quantize_(slim, config, calibration=calib, progress=False)
    assert not torch.equal(slim.model.transformer.h[0].ln_1.weight, ln_1)
    assert all(name.endswith("mlp.c_proj") for name in _wrapped(slim))
    expected = _logits(slim.model)
    slimformer.save(slim, tmp_path / "awq")
    again = slimformer.load(tmp_path / "awq", runtime="eager")
    assert torch.equal(_logits(again.model), expected)
