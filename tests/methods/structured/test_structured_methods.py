"""prune_heads, prune_neurons, drop_layers: importance finds dead parts, removal keeps outputs."""

from __future__ import annotations

import pytest
import torch

import slimformer
from conftest import eager_outputs
from slimformer import DropLayers, PruneHeads, PruneNeurons, prune_structure_
from slimformer.recipe import Recipe


def _windows(slim) -> torch.Tensor:
    return torch.randint(
        5, slim.config.vocab_size, (4, 24), generator=torch.Generator().manual_seed(0)
    )


def _context(slim) -> dict:
    return {
        "progress": False,
        **({} if slim.task == "classification" else {"calibration": _windows(slim)}),
    }


def _zero_heads(slim, plan: dict[int, list[int]]) -> None:
    layers = slim.adapter.layers()
    with torch.no_grad():
        for index, heads in plan.items():
            att = layers[index].attention
            for h in heads:
                att.o.weight[:, h * att.head_dim : (h + 1) * att.head_dim] = 0


def _params(slim) -> int:
    return sum(p.numel() for p in slim.model.parameters())


@pytest.mark.parametrize("importance", ["gradient", "activation"])
def test_bert_heads_that_do_nothing_are_the_ones_removed(
    importance, tiny_bert_cls_dir, tiny_cls_jsonl, minilm_tokenizer
):
    slim = slimformer.load(str(tiny_bert_cls_dir))
    _zero_heads(slim, {0: [1], 1: [3]})
    before = eager_outputs(slim, minilm_tokenizer)
    count = _params(slim)
    config = PruneHeads(count=1, importance=importance, dataset=str(tiny_cls_jsonl))
    prune_structure_(slim, config, progress=False)
    torch.testing.assert_close(eager_outputs(slim, minilm_tokenizer), before, rtol=1e-5, atol=1e-5)
    # One head a layer: 16 rows (+bias) of q, k and v and 16 columns of o, in two layers.
    assert count - _params(slim) == 2 * (3 * 16 * 65 + 64 * 16)
    assert slim.config.num_attention_heads == 3
    assert slim.compression["methods"][-1]["method"] == "prune_heads"


@pytest.mark.parametrize(
    ("gqa", "zeroed", "kv_heads"),
    [("within_groups", [0, 3], 2), ("whole_groups", [2, 3], 1)],
)
@pytest.mark.parametrize("importance", ["gradient", "activation"])
def test_llama_gqa_heads(importance, gqa, zeroed, kv_heads, tiny_llama_dir, minilm_tokenizer):
    slim = slimformer.load(str(tiny_llama_dir))
    _zero_heads(slim, {0: zeroed, 1: zeroed})
    before = eager_outputs(slim, minilm_tokenizer)
    config = PruneHeads(count=2, importance=importance, gqa=gqa)
    prune_structure_(slim, config, **_context(slim))
    torch.testing.assert_close(eager_outputs(slim, minilm_tokenizer), before, rtol=1e-5, atol=1e-5)
    assert (slim.config.num_attention_heads, slim.config.num_key_value_heads) == (2, kv_heads)


@pytest.mark.parametrize("importance", ["taylor", "activation"])
@pytest.mark.parametrize("fixture", ["tiny_bert_cls_dir", "tiny_llama_dir"])
def test_neurons_that_do_nothing_are_the_ones_removed(
    fixture, importance, request, tiny_cls_jsonl, minilm_tokenizer, tmp_path
):
    slim = slimformer.load(str(request.getfixturevalue(fixture)))
    layers = slim.adapter.layers()
    width = layers[0].mlp.intermediate_size
    dead = torch.randperm(width, generator=torch.Generator().manual_seed(1))[: width // 4]
    with torch.no_grad():
        for layer in layers:
            layer.mlp.down.weight[:, dead] = 0
    before = eager_outputs(slim, minilm_tokenizer)
    config = PruneNeurons(fraction=0.25, importance=importance, dataset=str(tiny_cls_jsonl))
    prune_structure_(slim, config, **_context(slim))
    torch.testing.assert_close(eager_outputs(slim, minilm_tokenizer), before, rtol=1e-5, atol=1e-5)
    assert slim.config.intermediate_size == width - width // 4
    slimformer.save(slim, tmp_path / "out")
    torch.testing.assert_close(
        eager_outputs(slimformer.load(str(tmp_path / "out")), minilm_tokenizer), before
    )


def test_global_neuron_scope_keeps_the_live_layer(tiny_llama_dir, minilm_tokenizer, tmp_path):
    slim = slimformer.load(str(tiny_llama_dir))
    with torch.no_grad():
        slim.adapter.layers()[1].mlp.down.weight[:, :100] = 0
    before = eager_outputs(slim, minilm_tokenizer)
    config = PruneNeurons(fraction=0.35, scope="global", importance="activation")
    prune_structure_(slim, config, **_context(slim))
    widths = [layer.mlp.intermediate_size for layer in slim.adapter.layers()]
    assert sum(widths) == 256 - round(0.35 * 256)
    assert widths[0] > widths[1]
    torch.testing.assert_close(eager_outputs(slim, minilm_tokenizer), before, rtol=1e-5, atol=1e-5)
    slimformer.save(slim, tmp_path / "out")
    again = slimformer.load(str(tmp_path / "out"))
    torch.testing.assert_close(eager_outputs(again, minilm_tokenizer), before)


@pytest.mark.parametrize("criterion", ["similarity", "loss"])
def test_a_layer_that_does_nothing_is_the_one_dropped(criterion, tiny_llama_dir, minilm_tokenizer):
    slim = slimformer.load(str(tiny_llama_dir))
    block = slim.adapter.layers()[0]
    with torch.no_grad():  # pre-norm block with zero output projections: output == input
        block.attention.o.weight.zero_()
        block.mlp.down.weight.zero_()
    before = eager_outputs(slim, minilm_tokenizer)
    kept = slim.model.model.layers[1]
    prune_structure_(slim, DropLayers(count=1, criterion=criterion), **_context(slim))
    assert list(slim.model.model.layers) == [kept]
    torch.testing.assert_close(eager_outputs(slim, minilm_tokenizer), before, rtol=1e-5, atol=1e-5)


def test_recipe_prunes_then_recovers_and_reloads(
    tiny_bert_cls_dir, tiny_cls_jsonl, write_recipe, tmp_path
):
    recipe = write_recipe(
        f"""name: structured
stages:
  - method: prune_heads
    fraction: 0.5
    dataset: {tiny_cls_jsonl}
  - method: prune_neurons
    fraction: 0.5
    dataset: {tiny_cls_jsonl}
  - method: finetune
    dataset: {tiny_cls_jsonl}
"""
    )
    slimformer.compress(
        str(tiny_bert_cls_dir),
        recipe,
        out=tmp_path / "out",
        measure=slimformer.pipeline.MeasureOptions(enabled=False),
        progress=False,
    )
    again = slimformer.load(str(tmp_path / "out"))
    sizes = [layer.sizes() for layer in again.adapter.layers()]
    assert {(s.num_heads, s.head_dim, s.intermediate_size) for s in sizes} == {(2, 16, 128)}
    assert Recipe.load(tmp_path / "out" / "recipe.yaml").stages[0].method == "prune_heads"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PruneHeads(fraction=1.2), "fraction"),
        (lambda: PruneHeads(fraction=0.5, count=2), "exactly one"),
        (lambda: PruneHeads(), "exactly one"),
        (lambda: PruneNeurons(fraction=0.0), "fraction"),
        (lambda: DropLayers(count=1, layers=[0]), "exactly one"),
        (lambda: PruneNeurons(fraction=0.5, scope="global", multiple_of=8), "multiple_of"),
    ],
)
def test_bad_settings_are_one_line_errors(make, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        make()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (PruneHeads(count=1), "breaks grouped-query attention"),
        (PruneHeads(count=4), "leaves no attention"),
        (PruneHeads(fraction=0.1), "removes none"),
        (PruneHeads(count=2, scope="global"), "scope global"),
        (PruneNeurons(fraction=0.5, multiple_of=128), "keeps 0"),
        (DropLayers(count=2), "leaves no model"),
        (DropLayers(layers=[0, 1]), "removing all 2 layers"),
    ],
)
def test_impossible_requests_change_nothing(config, message, tiny_llama_dir):
    slim = slimformer.load(str(tiny_llama_dir))
    state = {k: v.clone() for k, v in slim.model.state_dict().items()}
    with pytest.raises(slimformer.SlimformerError, match=message) as info:
        prune_structure_(slim, config, **_context(slim))
    assert "\n" not in str(info.value)
    after = slim.model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert slim.config.num_attention_heads == 4 and slim.config.num_hidden_layers == 2


def test_classifier_needs_labelled_data_and_embeddings_need_no_loss(
    tiny_bert_cls_dir, tiny_bert_dir
):
    classifier = slimformer.load(str(tiny_bert_cls_dir))
    with pytest.raises(slimformer.SlimformerError, match="set `dataset:`"):
        prune_structure_(classifier, PruneHeads(count=1), progress=False)
    encoder = slimformer.load(str(tiny_bert_dir))
    with pytest.raises(slimformer.SlimformerError, match="no loss"):
        prune_structure_(encoder, PruneNeurons(fraction=0.5), **_context(encoder))
    prune_structure_(
        encoder, PruneNeurons(fraction=0.5, importance="activation"), **_context(encoder)
    )
    assert encoder.config.intermediate_size == 128


def test_the_verb_refuses_other_methods(tiny_bert_cls_dir):
    slim = slimformer.load(str(tiny_bert_cls_dir))
    with pytest.raises(slimformer.SlimformerError, match="not a structured pruning method"):
        prune_structure_(slim, slimformer.Int8Dynamic())
