"""Removing heads, neurons and layers: same outputs when the parts were zero, exact sizes."""

from __future__ import annotations

import pytest
import torch
import transformers

import slimformer
from conftest import eager_outputs
from slimformer.arch.surgery import remove_heads, remove_layers, remove_neurons, sync_config
from slimformer.evaluate.size import count_parameters
from slimformer.serialization import read_config_json


def _params(slim) -> int:
    return sum(p.numel() for p in slim.model.parameters())


def _zero_heads(att, heads) -> None:
    """Zero the o-projection columns of ``heads``: the heads then contribute nothing."""
    with torch.no_grad():
        for h in heads:
            att.o.weight[:, h * att.head_dim : (h + 1) * att.head_dim] = 0


def _zero_neurons(mlp, neurons) -> None:
    with torch.no_grad():
        mlp.down.weight[:, list(neurons)] = 0


@pytest.mark.parametrize("fixture", ["tiny_bert_cls_dir", "tiny_llama_dir"])
def test_removing_zeroed_heads_and_neurons_keeps_outputs(fixture, request, minilm_tokenizer):
    slim = slimformer.load(str(request.getfixturevalue(fixture)))
    layers = slim.adapter.layers()
    att0, att1 = layers[0].attention, layers[1].attention
    # Llama fixture: 4 query heads over 2 key/value heads. Layer 0 loses one head per group,
    # layer 1 a whole group; BERT simply loses those heads.
    plan = {0: [1, 2], 1: [2, 3]}
    _zero_heads(att0, plan[0])
    _zero_heads(att1, plan[1])
    _zero_neurons(layers[0].mlp, range(0, 40))
    _zero_neurons(layers[1].mlp, range(10, 30))
    before = eager_outputs(slim, minilm_tokenizer)
    count = _params(slim)
    hidden, head_dim = slim.config.hidden_size, att0.head_dim
    kv_gone = {0: 0, 1: 1} if att0.group_size > 1 else {0: 2, 1: 2}
    for index, heads in plan.items():
        remove_heads(slim.adapter, index, heads)
    remove_neurons(slim.adapter, 0, range(0, 40))
    remove_neurons(slim.adapter, 1, range(10, 30))
    sync_config(slim.adapter)
    after = eager_outputs(slim, minilm_tokenizer)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    bias = 1 if slim.adapter.family == "bert" else 0
    # Per query head: its q rows and o columns; per key/value head: its k and v rows.
    removed_heads = 4 * (head_dim * (hidden + bias) + hidden * head_dim)
    removed_kv = sum(kv_gone.values()) * 2 * head_dim * (hidden + bias)
    mlp_mats = 2 if slim.adapter.family == "bert" else 3
    removed_mlp = 60 * (mlp_mats * hidden + bias)
    assert count - _params(slim) == removed_heads + removed_kv + removed_mlp
    sizes = [layer.sizes() for layer in slim.adapter.layers()]
    assert [s.num_heads for s in sizes] == [2, 2]
    if att0.group_size > 1:
        assert [s.num_kv_heads for s in sizes] == [2, 1]
        assert slim.model.model.layers[0].self_attn.num_key_value_groups == 1
        assert slim.model.model.layers[1].self_attn.num_key_value_groups == 2


def test_per_layer_sizes_reload_through_slimformer(tiny_llama_dir, minilm_tokenizer, tmp_path):
    slim = slimformer.load(str(tiny_llama_dir))
    remove_heads(slim.adapter, 0, [1, 3])  # one per group: 2 query heads over 2 kv heads
    remove_neurons(slim.adapter, 1, range(50))
    sync_config(slim.adapter)
    before = eager_outputs(slim, minilm_tokenizer)
    slimformer.save(slim, tmp_path / "out")
    meta = read_config_json(tmp_path / "out")["slimformer"]
    assert [layer["num_heads"] for layer in meta["structure"]["layers"]] == [2, 4]
    assert [layer["intermediate_size"] for layer in meta["structure"]["layers"]] == [128, 78]
    again = slimformer.load(str(tmp_path / "out"))
    torch.testing.assert_close(eager_outputs(again, minilm_tokenizer), before)
    assert count_parameters(again.model) == count_parameters(slim.model)


@pytest.mark.parametrize(
    ("fixture", "auto"),
    [
        ("tiny_bert_cls_dir", transformers.AutoModelForSequenceClassification),
        ("tiny_llama_dir", transformers.AutoModelForCausalLM),
    ],
)
def test_uniform_sizes_reload_through_plain_transformers(
    fixture, auto, request, minilm_tokenizer, tmp_path
):
    slim = slimformer.load(str(request.getfixturevalue(fixture)))
    for index in range(2):
        remove_neurons(slim.adapter, index, range(index, 100 + index))
    if slim.adapter.family == "llama":  # Llama keeps its head size in the config
        for index in range(2):
            remove_heads(slim.adapter, index, [0, 1])  # a whole group each
    remove_layers(slim.adapter, [0])
    sync_config(slim.adapter)
    before = eager_outputs(slim, minilm_tokenizer)
    slimformer.save(slim, tmp_path / "out")
    assert "structure" not in read_config_json(tmp_path / "out")["slimformer"]
    plain = auto.from_pretrained(tmp_path / "out").eval()
    inputs = minilm_tokenizer(
        ["the cat sat on the mat", "a longer one"], padding=True, return_tensors="pt"
    )
    if slim.task == "causal-lm":
        inputs.pop("token_type_ids")
    with torch.no_grad():
        plain_out = plain(**inputs).logits
    again = slimformer.load(str(tmp_path / "out"))
    torch.testing.assert_close(eager_outputs(again, minilm_tokenizer), before)
    with torch.no_grad():
        torch.testing.assert_close(plain_out, slim.model(**inputs).logits)
    assert plain.config.num_hidden_layers == 1


def test_bert_with_fewer_heads_reloads_through_slimformer(
    tiny_bert_cls_dir, minilm_tokenizer, tmp_path
):
    """BERT derives head size from hidden / heads, so its heads need the saved structure."""
    slim = slimformer.load(str(tiny_bert_cls_dir))
    for index in range(2):
        remove_heads(slim.adapter, index, [index])  # 3 of 4 heads: 64 / 3 does not divide
    sync_config(slim.adapter)
    assert slim.config.num_attention_heads == 3
    before = eager_outputs(slim, minilm_tokenizer)
    slimformer.save(slim, tmp_path / "out")
    assert read_config_json(tmp_path / "out")["slimformer"]["structure"]["construct"] == {
        "num_attention_heads": 4
    }
    again = slimformer.load(str(tmp_path / "out"))
    assert again.config.num_attention_heads == 3
    torch.testing.assert_close(eager_outputs(again, minilm_tokenizer), before)


def test_removed_layers_renumber_cache_slots_and_generate(tiny_llama_dir, minilm_tokenizer):
    slim = slimformer.load(str(tiny_llama_dir))
    kept = slim.model.model.layers[1]
    remove_layers(slim.adapter, [0])
    assert slim.config.num_hidden_layers == 1
    assert kept.self_attn.layer_idx == 0
    ids = minilm_tokenizer(["the river runs"], return_tensors="pt").input_ids
    with torch.no_grad():
        out = slim.model.generate(ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 3


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda a: remove_heads(a, 0, [0, 1, 2, 3]), "removing all 4 heads"),
        (lambda a: remove_heads(a, 0, [0]), "unequal sizes"),
        (lambda a: remove_heads(a, 1, [3]), "unequal sizes"),
        (lambda a: remove_heads(a, 0, [7]), "head 7 does not exist"),
        (lambda a: remove_heads(a, 5, [0]), "layer 5 does not exist"),
        (lambda a: remove_neurons(a, 0, range(128)), "all 128 MLP neurons"),
        (lambda a: remove_layers(a, [0, 1]), "removing all 2 layers"),
    ],
)
def test_impossible_removals_are_one_line_and_change_nothing(tiny_llama_dir, action, message):
    slim = slimformer.load(str(tiny_llama_dir))
    state = {k: v.clone() for k, v in slim.model.state_dict().items()}
    with pytest.raises(slimformer.SlimformerError, match=message) as info:
        action(slim.adapter)
    assert "\n" not in str(info.value)
    after = slim.model.state_dict()
    assert state.keys() == after.keys()
    assert all(torch.equal(state[k], after[k]) for k in state)


def test_compressed_layers_are_refused(tiny_bert_cls_dir):
    slim = slimformer.load(str(tiny_bert_cls_dir))
    slimformer.quantize_(slim, slimformer.Int8Dynamic(), progress=False)
    with pytest.raises(slimformer.SlimformerError, match="before quantization"):
        remove_heads(slim.adapter, 0, [0])


def test_fused_qkv_heads_are_refused_before_any_cut(tiny_gpt2_dir):
    slim = slimformer.load(str(tiny_gpt2_dir))
    state = {k: v.clone() for k, v in slim.model.state_dict().items()}
    with pytest.raises(slimformer.SlimformerError, match="fused") as info:
        remove_heads(slim.adapter, 0, [0])
    assert "\n" not in str(info.value)
    after = slim.model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)
