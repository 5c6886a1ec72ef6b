"""Students cut from the teacher keep the teacher's weights exactly where they came from."""

from __future__ import annotations

import pytest
import torch

import slimformer
from conftest import eager_outputs
from slimformer.errors import SlimformerError
from slimformer.methods.distillation import narrow, select_layers
from slimformer.serialization import read_config_json
from tiny_models import tiny_model

#: Llama teachers with explicit 16-wide heads, transformers' default context and an untied head.
UNTIED_LLAMA = {"head_dim": 16, "max_position_embeddings": 2048, "tie_word_embeddings": False}


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
    model = tiny_model("llama", len(minilm_tokenizer), num_key_value_heads=4, **UNTIED_LLAMA)
    teacher = slimformer.SlimModel(model, minilm_tokenizer, "t", "memory", "causal-lm")
    student = narrow(teacher, heads=2)
    assert student.adapter.layers()[0].attention.q.weight.shape == (32, 64)
    assert student.model.config.num_attention_heads == 2
    with torch.no_grad():
        assert student.model(input_ids=torch.tensor([[3, 4, 5]])).logits.shape[1] == 3


def test_narrow_bert_heads_keeps_whole_heads_and_reloads(tiny_bert_cls_dir, tmp_path):
    """BERT derives head size from the head count: its narrowed student reloads by its structure."""
    teacher = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    student = narrow(teacher, heads=2)
    for t_layer, s_layer in zip(teacher.adapter.layers(), student.adapter.layers(), strict=True):
        t_att, s_att = t_layer.attention, s_layer.attention
        assert (s_att.num_heads, s_att.head_dim) == (2, t_att.head_dim)
        kept = _kept_heads(t_att, s_att)
        assert len(kept) == 2
        for name in ("q", "k", "v"):
            rows = torch.cat([torch.arange(h * 16, (h + 1) * 16) for h in kept])
            assert torch.equal(getattr(s_att, name).weight, getattr(t_att, name).weight[rows])
            assert torch.equal(getattr(s_att, name).bias, getattr(t_att, name).bias[rows])
    assert student.model.config.num_attention_heads == 2
    inputs = teacher.tokenizer(
        ["hello there", "a longer sentence"], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        before = student.model.eval()(**inputs).logits
    slimformer.save(student, tmp_path / "n")
    structure = read_config_json(tmp_path / "n")["slimformer"]["structure"]
    assert [layer["num_heads"] for layer in structure["layers"]] == [2, 2]
    again = slimformer.load(tmp_path / "n", runtime="eager")
    with torch.no_grad():
        assert torch.equal(again.model(**inputs).logits, before)


def _kept_heads(t_att, s_att) -> list[int]:
    """Which teacher heads the student kept, found by matching their o columns."""
    dim = t_att.head_dim
    t_cols = t_att.o.weight.view(t_att.o.weight.shape[0], t_att.num_heads, dim)
    s_cols = s_att.o.weight.view(s_att.o.weight.shape[0], s_att.num_heads, dim)
    return [
        next(h for h in range(t_att.num_heads) if torch.equal(t_cols[:, h], s_cols[:, i]))
        for i in range(s_att.num_heads)
    ]


def _gqa_teacher(tokenizer, **extra) -> slimformer.SlimModel:
    model = tiny_model(
        "llama",
        len(tokenizer),
        seed=4,
        num_hidden_layers=3,
        num_attention_heads=8,
        **{**UNTIED_LLAMA, **extra},
    ).eval()
    return slimformer.SlimModel(model, tokenizer, "t", "memory", "causal-lm")


def _head_scores(att) -> torch.Tensor:
    v = att.v.weight.view(att.num_kv_heads, att.head_dim, -1).flatten(1).norm(dim=1)
    o = att.o.weight.view(-1, att.num_heads, att.head_dim).transpose(0, 1).flatten(1).norm(dim=1)
    return v.repeat_interleave(att.group_size) * o


@pytest.mark.parametrize(
    ("gqa", "heads", "kv_heads"), [("within_groups", 4, 2), ("whole_groups", 4, 1)]
)
def test_narrow_llama_with_grouped_query_attention(
    minilm_tokenizer, tmp_path, gqa, heads, kv_heads
):
    teacher = _gqa_teacher(minilm_tokenizer)
    student = narrow(teacher, heads=heads, intermediate_size=64, gqa=gqa)
    config = student.model.config
    assert (config.num_attention_heads, config.num_key_value_heads) == (heads, kv_heads)
    assert (config.head_dim, config.intermediate_size) == (16, 64)
    for t_layer, s_layer in zip(teacher.adapter.layers(), student.adapter.layers(), strict=True):
        t_att, s_att = t_layer.attention, s_layer.attention
        assert (s_att.num_heads, s_att.num_kv_heads) == (heads, kv_heads)
        assert s_att.module.num_key_value_groups == heads // kv_heads
        kept = _kept_heads(t_att, s_att)
        scores = _head_scores(t_att).view(2, 4)  # 2 groups of 4 query heads
        if gqa == "whole_groups":  # the stronger group, whole
            best = int(scores.sum(1).argmax())
            assert kept == list(range(best * 4, best * 4 + 4))
        else:  # the two strongest heads of each group
            best = [
                g * 4 + int(h) for g in range(2) for h in scores[g].topk(2).indices.sort().values
            ]
            assert kept == best
        kv_rows = t_att.k.weight.view(2, 16, -1)[sorted({h // 4 for h in kept})].flatten(0, 1)
        assert torch.equal(s_att.k.weight, kv_rows)
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        before = student.model(input_ids=ids).logits
    slimformer.save(student, tmp_path / "s")
    assert "structure" not in read_config_json(tmp_path / "s")["slimformer"]  # config says it all
    again = slimformer.load(tmp_path / "s", runtime="eager")
    with torch.no_grad():
        assert torch.equal(again.model(input_ids=ids).logits, before)
        generated = again.model.generate(ids, max_new_tokens=2, do_sample=False)
    assert generated.shape == (1, 6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"heads": 3, "gqa": "within_groups"}, "same number from each of 2 key/value groups"),
        ({"heads": 6, "gqa": "whole_groups"}, "whole groups of 4 query heads"),
        ({"heads": 9}, "heads=9 is not between 1 and the teacher's 8"),
        ({"intermediate_size": 0}, "intermediate_size=0 is not between 1"),
        ({}, "nothing to narrow"),
    ],
)
def test_narrow_refuses_what_it_cannot_build(minilm_tokenizer, kwargs, message):
    teacher = _gqa_teacher(minilm_tokenizer)
    with pytest.raises(SlimformerError, match=message) as info:
        narrow(teacher, **kwargs)
    assert "\n" not in str(info.value)


def test_narrow_heads_refused_for_fused_qkv(tiny_gpt2_dir):
    teacher = slimformer.load(tiny_gpt2_dir, runtime="eager")
    with pytest.raises(SlimformerError, match="fused"):
        narrow(teacher, heads=2)


def test_narrow_refuses_compressed_layers(tiny_bert_cls_dir):
    teacher = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    slimformer.quantize_(teacher, slimformer.Int8Dynamic(), progress=False)
    for kwargs in ({"intermediate_size": 32}, {"heads": 2}):
        with pytest.raises(SlimformerError, match="before quantization"):
            narrow(teacher, **kwargs)


def test_narrow_gpt2_ffn_reloads(tiny_gpt2_dir, tmp_path):
    teacher = slimformer.load(tiny_gpt2_dir, runtime="eager")
    student = narrow(teacher, intermediate_size=100)
    assert student.model.config.n_inner == 100
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        before = student.model(input_ids=ids).logits
    slimformer.save(student, tmp_path / "g")
    again = slimformer.load(tmp_path / "g", runtime="eager")
    with torch.no_grad():
        assert torch.equal(again.model(input_ids=ids).logits, before)


@pytest.mark.parametrize("fixture", ["tiny_bert_cls_dir", "tiny_llama_dir"])
def test_keeping_everything_is_the_identity(fixture, request, minilm_tokenizer):
    teacher = slimformer.load(request.getfixturevalue(fixture), runtime="eager")
    att = teacher.adapter.layers()[0].attention
    width = teacher.adapter.layers()[0].mlp.intermediate_size
    students = [
        select_layers(teacher, every=1),
        narrow(teacher, heads=att.num_heads, intermediate_size=width),
    ]
    before = eager_outputs(teacher, minilm_tokenizer)
    state = teacher.model.state_dict()
    for student in students:
        after = student.model.state_dict()
        assert after.keys() == state.keys()
        assert all(torch.equal(after[k], state[k]) for k in state)
        assert torch.equal(eager_outputs(student, minilm_tokenizer), before)
        assert student.model.config.to_dict() == teacher.model.config.to_dict()


def test_selected_llama_student_reloads_identically(tiny_llama_dir, minilm_tokenizer, tmp_path):
    teacher = slimformer.load(tiny_llama_dir, runtime="eager")
    student = select_layers(teacher, [1])
    before = eager_outputs(student, minilm_tokenizer)
    slimformer.save(student, tmp_path / "s")
    meta = read_config_json(tmp_path / "s")["slimformer"]
    assert meta["methods"] == [
        {"method": "select_layers", "version": 1, "layers": [1], "every": None}
    ]
    again = slimformer.load(tmp_path / "s", runtime="eager")
    assert torch.equal(eager_outputs(again, minilm_tokenizer), before)


def test_student_stages_in_a_recipe(tiny_bert_cls_dir, tiny_cls_jsonl, write_recipe, tmp_path):
    """select_layers and narrow shape the student; distill then learns from the original."""
    recipe = write_recipe(
        "name: s\nstages:\n  - method: select_layers\n    layers: [1]\n"
        "  - method: narrow\n    heads: 2\n    intermediate_size: 64\n"
        f"  - method: distill\n    dataset: {tiny_cls_jsonl}\n    max_steps: 1\n"
        "    batch_size: 4\n"
    )
    out = tmp_path / "out"
    slimformer.compress(
        str(tiny_bert_cls_dir),
        recipe,
        out,
        measure=slimformer.pipeline.MeasureOptions(enabled=False),
        progress=False,
    )
    again = slimformer.load(out)
    sizes = [layer.sizes() for layer in again.adapter.layers()]
    assert [(s.num_heads, s.head_dim, s.intermediate_size) for s in sizes] == [(2, 16, 64)]
    methods = [m["method"] for m in read_config_json(out)["slimformer"]["methods"]]
    assert methods == ["select_layers", "narrow", "distill"]
    text = (out / "recipe.yaml").read_text()
    assert "method: select_layers" in text and "method: narrow" in text


def test_student_stage_cuts_in_place_and_refuses_before_changing(tiny_llama_dir):
    from slimformer.methods.apply import apply_method
    from slimformer.methods.students import Narrow, SelectLayers

    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    state = {k: v.clone() for k, v in slim.model.state_dict().items()}
    # the FFN cut is possible, the heads one is not (3 of 4 query heads over 2 key/value heads)
    with pytest.raises(SlimformerError, match="key/value groups"):
        apply_method(slim, Narrow(intermediate_size=64, heads=3), progress=False)
    after = slim.model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)
    apply_method(slim, SelectLayers(every=2), progress=False)
    assert slim.model.config.num_hidden_layers == 1 and len(slim.adapter.layers()) == 1
    with pytest.raises(ValueError, match="exactly one of"):
        SelectLayers(layers=[0], every=2)
    with pytest.raises(ValueError, match="heads"):
        Narrow()


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
