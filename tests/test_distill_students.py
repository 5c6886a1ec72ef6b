"""Students cut from the teacher keep the teacher's weights exactly where they came from."""

from __future__ import annotations

import pytest
import torch

import slimformer
from slimformer.errors import SlimformerError
from slimformer.methods.distillation import narrow, select_layers


def test_layer_selection_keeps_selected_layers_exactly(tiny_bert_cls_dir, tmp_path):
    teacher = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    student = select_layers(teacher, [1])
    assert len(student.adapter.layers()) == 1 and student.model.config.num_hidden_layers == 1
    kept = student.adapter.layer_stack()[0].state_dict()
    source = teacher.adapter.layer_stack()[1].state_dict()
    assert kept.keys() == source.keys()
    assert all(torch.equal(kept[k], source[k]) for k in kept)
    assert len(teacher.adapter.layers()) == 2  # the teacher is untouched
    slimformer.save(student, tmp_path / "s")
    again = slimformer.load(tmp_path / "s", runtime="eager")
    inputs = teacher.tokenizer(["hello there"], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(again.model(**inputs).logits, student.model.eval()(**inputs).logits)


def test_layer_selection_renumbers_decoder_layers(tiny_llama_dir):
    teacher = slimformer.load(tiny_llama_dir, runtime="eager")
    student = select_layers(teacher, every=2)
    assert [b.self_attn.layer_idx for b in student.adapter.layer_stack()] == [0]
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert student.model(input_ids=ids).logits.shape == (1, 4, teacher.config.vocab_size)


def test_layer_selection_refuses_missing_layers(tiny_bert_cls_dir):
    teacher = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    with pytest.raises(SlimformerError, match=r"layer 5 does not exist.*0\.\.1"):
        select_layers(teacher, [0, 5])


@pytest.mark.parametrize("init", ["importance", "random"])
def test_narrow_ffn_copies_teacher_slices(tiny_bert_cls_dir, tmp_path, init):
    teacher = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    student = narrow(teacher, intermediate_size=32, init=init)
    for t_layer, s_layer in zip(teacher.adapter.layers(), student.adapter.layers(), strict=True):
        up_t, up_s = t_layer.mlp.up.weight, s_layer.mlp.up.weight
        assert up_s.shape == (32, up_t.shape[1])
        rows = [
            int((up_t == row).all(dim=1).nonzero()) for row in up_s
        ]  # each row is a teacher row
        assert torch.equal(s_layer.mlp.down.weight, t_layer.mlp.down.weight[:, rows])
    if init == "importance":
        layer = teacher.adapter.layers()[0].mlp
        scores = layer.up.weight.norm(dim=1) * layer.down.weight.norm(dim=0)
        best = set(torch.topk(scores, 32).indices.tolist())
        up_s = student.adapter.layers()[0].mlp.up.weight
        chosen = {int((layer.up.weight == row).all(dim=1).nonzero()) for row in up_s}
        assert chosen == best
    slimformer.save(student, tmp_path / "n")
    assert slimformer.load(tmp_path / "n").config.intermediate_size == 32


def test_narrow_heads_on_llama_keeps_whole_heads(tmp_path, minilm_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(minilm_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=16,
    )
    torch.manual_seed(0)
    teacher = slimformer.SlimModel(
        LlamaForCausalLM(config), minilm_tokenizer, "t", "memory", "causal-lm"
    )
    student = narrow(teacher, heads=2)
    assert student.adapter.layers()[0].attention.q.weight.shape == (32, 64)
    assert student.model.config.num_attention_heads == 2
    with torch.no_grad():
        assert student.model(input_ids=torch.tensor([[3, 4, 5]])).logits.shape[1] == 3


def test_narrow_heads_refused_for_bert(tiny_bert_cls_dir):
    teacher = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    with pytest.raises(SlimformerError, match="intermediate_size"):
        narrow(teacher, heads=2)


def test_the_verb_is_a_plain_function_the_package_cannot_shadow():
    """``slimformer.distill`` is the verb; importing the package (any submodule) keeps it so."""
    import inspect

    import slimformer.methods.distillation.data  # a submodule import sets package attributes

    assert inspect.isfunction(slimformer.distill)
    import slimformer.pipeline

    # The top-level verb is the pipeline's wrapper (it also loads models given by name).
    assert slimformer.distill is slimformer.pipeline.distill
    assert inspect.isfunction(slimformer.methods.distillation.distill)
    assert not callable(slimformer.methods.distillation)
