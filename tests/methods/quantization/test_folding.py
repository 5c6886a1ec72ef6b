"""Moving scales between a layer group's input and its weights keeps the model's function."""

from __future__ import annotations

import pytest
import torch

import slimformer
from slimformer.methods.quantization.folding import apply_input_scale
from slimformer.methods.quantization.rtn import RTN
from slimformer.nn import InputScaled


def _outputs(slim, ids):
    with torch.no_grad():
        out = slim.model(input_ids=ids, attention_mask=torch.ones_like(ids))
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def _scale_everything(slim, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for layer in slim.adapter.layers():
        for group in slim.adapter.scale_groups(layer):
            if not all(c.weight.is_floating_point() for c in group.consumers):
                continue  # compressed consumers keep their codes
            features = group.consumers[0].weight.shape[1]
            apply_input_scale(slim.model, group, torch.rand(features, generator=gen) * 3 + 0.2)
        slim.refresh_adapter()


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_bert_cls_dir"])
def test_scaling_every_group_keeps_outputs(fixture, request):
    slim = slimformer.load(request.getfixturevalue(fixture), runtime="eager")
    ids = torch.randint(1000, 2000, (2, 12), generator=torch.Generator().manual_seed(3))
    before = _outputs(slim, ids)
    _scale_everything(slim)
    assert torch.allclose(_outputs(slim, ids), before, atol=1e-4, rtol=1e-4)


def test_groups_follow_the_architecture(tiny_llama_dir, tiny_bert_cls_dir):
    llama = slimformer.load(tiny_llama_dir, runtime="eager")
    groups = {g.name: g for g in llama.adapter.scale_groups(llama.adapter.layers()[0])}
    assert groups["attention_in"].producer is llama.adapter.layers()[0].norms["attention_norm"]
    assert groups["attention_out"].producer is None  # grouped-query attention: v does not fold
    assert groups["mlp_out"].producer is llama.adapter.layers()[0].mlp.up
    bert = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    groups = {g.name: g for g in bert.adapter.scale_groups(bert.adapter.layers()[0])}
    assert groups["attention_in"].producer is None  # post-norm: the norm output is the residual
    assert groups["attention_out"].producer is bert.adapter.layers()[0].attention.v


def test_explicitly_scaled_then_quantized_model_reloads(tiny_bert_cls_dir, tmp_path):
    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    _scale_everything(slim)
    assert any(isinstance(m, InputScaled) for m in slim.model.modules())
    slimformer.quantize_(slim, RTN(bits=8, group_size=32), progress=False)
    ids = torch.randint(1000, 2000, (2, 12), generator=torch.Generator().manual_seed(4))
    expected = _outputs(slim, ids)
    slimformer.save(slim, tmp_path / "scaled")
    again = slimformer.load(tmp_path / "scaled", runtime="eager")
    assert torch.equal(_outputs(again, ids), expected)


def test_compressed_or_wrapped_producers(tiny_llama_dir):
    """A wrapped producer passes the scale inward; a compressed one makes it explicit."""
    from torch import nn

    from slimformer.methods.quantization.folding import absorber
    from slimformer.nn import Int8DynamicLinear

    linear = nn.Linear(8, 8)
    assert absorber(InputScaled(linear, torch.ones(8))) is linear
    assert absorber(Int8DynamicLinear.from_linear(linear)) is None
    assert absorber(nn.LayerNorm(8)) is not None and absorber(None) is None
    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    slimformer.quantize_(slim, slimformer.Int8Dynamic(include=["*.mlp.up_proj"]), progress=False)
    ids = torch.randint(1000, 2000, (2, 12), generator=torch.Generator().manual_seed(5))
    before = _outputs(slim, ids)
    _scale_everything(slim)  # up_proj is int8 now: the mlp_out scale must go explicit
    assert torch.allclose(_outputs(slim, ids), before, atol=1e-4, rtol=1e-4)
    assert isinstance(slim.model.model.layers[0].mlp.down_proj, InputScaled)
