"""int8 embedding tables: the module, the method's selection rules, saving and tied heads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import slimformer
from conftest import eager_outputs
from slimformer.errors import SlimformerError
from slimformer.evaluate.size import linear_module_names, safetensors_tensor_bytes
from slimformer.methods.catalog import method_entry
from slimformer.nn import Int8DynamicLinear, Int8Embedding, compressed_modules, module_class
from slimformer.recipe import Recipe
from slimformer.runtime import compiler_available

WORD = "bert.embeddings.word_embeddings"


def random_embedding(num=50, dim=24, padding_idx=None, seed=0) -> nn.Embedding:
    torch.manual_seed(seed)
    embedding = nn.Embedding(num, dim, padding_idx=padding_idx)
    with torch.no_grad():
        embedding.weight[7] *= 100  # one loud row must not cost the others precision
    return embedding


# --- the module ----------------------------------------------------------------------------


def test_round_trip_error_is_at_most_half_a_step_per_element():
    embedding = random_embedding()
    module = Int8Embedding.from_embedding(embedding)
    assert module.qweight.dtype == torch.int8 and module.qweight.shape == (50, 24)
    assert module.scales.dtype == torch.float16 and module.scales.shape == (50,)
    assert module.qweight.abs().max() <= 127
    # every row uses its full range: absmax / 127 per row, not one scale for the table
    assert torch.equal(module.qweight.abs().amax(dim=1), torch.full((50,), 127, dtype=torch.int8))
    scale = module.scales.float()[:, None]
    error = (module.dequantized_weight() - embedding.weight.detach()).abs()
    assert (error <= scale / 2 * (1 + 1e-5)).all()
    assert module.scales[0] < module.scales[7] / 20


def test_forward_gathers_the_rows_of_any_id_shape():
    embedding = random_embedding()
    module = Int8Embedding.from_embedding(embedding)
    ids = torch.tensor([[0, 7, 49], [7, 7, 3]])
    out = module(ids)
    assert out.shape == (2, 3, 24) and out.dtype == torch.float32
    assert torch.equal(out, module.dequantized_weight()[ids])
    assert torch.allclose(out, embedding(ids), atol=module.scales.float().max().item() / 2)


def test_forward_never_dequantizes_the_whole_table(monkeypatch):
    module = Int8Embedding.from_embedding(random_embedding())
    monkeypatch.setattr(module, "dequantized_weight", lambda: pytest.fail("table rebuilt"))
    assert module(torch.tensor([1, 2])).shape == (2, 24)


def test_padding_row_is_returned_as_stored_like_nn_embedding():
    embedding = random_embedding(padding_idx=0)
    assert not embedding.weight[0].any()  # nn.Embedding zeroes it at init
    module = Int8Embedding.from_embedding(embedding)
    assert module.padding_idx == 0
    assert not module(torch.tensor([0, 0])).any()  # zero stays exactly zero on a symmetric grid


def test_output_dtype_follows_the_table():
    embedding = random_embedding().to(torch.bfloat16)
    module = Int8Embedding.from_embedding(embedding)
    assert module(torch.tensor([1])).dtype == torch.bfloat16
    assert Int8Embedding.from_spec(module.spec()).dtype == torch.bfloat16


def test_casting_the_model_changes_the_output_dtype_not_the_scales():
    module = Int8Embedding.from_embedding(random_embedding())
    scales, codes = module.scales.clone(), module.qweight.clone()
    module.to(torch.bfloat16)
    assert module.scales.dtype == torch.float16 and torch.equal(module.scales, scales)
    assert torch.equal(module.qweight, codes)
    assert module(torch.tensor([1])).dtype == torch.bfloat16
    assert module.spec()["dtype"] == "bfloat16"


def test_then_float_format_gives_a_consistent_bf16_model(tiny_bert_cls_dir, minilm_tokenizer):
    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    slimformer.quantize_(slim, slimformer.Int8Embeddings(), progress=False)
    slimformer.quantize_(slim, slimformer.FloatFormat(), progress=False)
    assert eager_outputs(slim, minilm_tokenizer).dtype == torch.bfloat16


def test_spec_rebuilds_an_empty_module_of_the_same_shape():
    module = Int8Embedding.from_embedding(random_embedding(padding_idx=3))
    assert module_class("int8_embedding") is Int8Embedding
    empty = Int8Embedding.from_spec(module.spec())
    assert empty.spec() == module.spec()
    empty.load_state_dict(module.state_dict())
    assert torch.equal(empty(torch.tensor([3, 7])), module(torch.tensor([3, 7])))


# --- the method on models ------------------------------------------------------------------


def test_token_table_only_by_default_and_outputs_stay_close(tiny_bert_dir, minilm_tokenizer):
    slim = slimformer.load(tiny_bert_dir, runtime="eager")
    expected = eager_outputs(slim, minilm_tokenizer)
    slimformer.quantize_(slim, slimformer.Int8Embeddings(), progress=False)
    assert list(compressed_modules(slim.model)) == ["embeddings.word_embeddings"]
    assert type(slim.model.embeddings.position_embeddings) is nn.Embedding
    actual = eager_outputs(slim, minilm_tokenizer)
    assert not torch.equal(actual, expected)
    assert ((actual - expected).norm() / expected.norm()).item() < 0.02


def test_all_tables(tiny_bert_cls_dir):
    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    slimformer.quantize_(slim, slimformer.Int8Embeddings(tables="all"), progress=False)
    names = {f"bert.embeddings.{t}" for t in ("word", "position", "token_type")}
    assert set(compressed_modules(slim.model)) == {f"{n}_embeddings" for n in names}
    # compressed tables are still embeddings to the adapter, never linear layers to size reports
    assert set(slim.adapter.embeddings()) == set(compressed_modules(slim.model))
    assert slim.adapter.part_of(WORD) == "embedding"
    assert not any("embeddings" in name for name in linear_module_names(slim.model))


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"include": ["bert.embeddings.nope"]}, "pattern 'bert.embeddings.nope' matches no"),
        ({"exclude": [WORD]}, "no embedding table of .* is selected"),
        ({"tables": "all", "include": ["*position*"], "exclude": ["*position*"]}, "no embedding"),
    ],
)
def test_bad_selection_is_one_clear_line(tiny_bert_cls_dir, settings, match):
    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    with pytest.raises(SlimformerError, match=match) as info:
        slimformer.quantize_(slim, slimformer.Int8Embeddings(**settings), progress=False)
    assert "\n" not in str(info.value)
    assert not compressed_modules(slim.model)


def test_unknown_setting_and_table_kind_are_refused():
    with pytest.raises(ValueError, match="tables"):
        slimformer.Int8Embeddings(tables="word")
    with pytest.raises(ValueError, match="extra"):
        slimformer.Int8Embeddings(bits=4)


def test_quantizing_twice_is_refused(tiny_bert_cls_dir):
    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    slimformer.quantize_(slim, slimformer.Int8Embeddings(), progress=False)
    with pytest.raises(SlimformerError, match=f"{WORD} is already compressed"):
        slimformer.quantize_(slim, slimformer.Int8Embeddings(tables="all"), progress=False)


def test_registered_as_a_quantization_method():
    entry = method_entry("int8_embedding")
    assert entry.family == "quantization" and entry.config is slimformer.Int8Embeddings


# --- saving -------------------------------------------------------------------------------


def test_save_reload_is_bit_identical_and_the_table_shrinks(
    tiny_bert_cls_dir, minilm_tokenizer, tmp_path
):
    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    slimformer.quantize_(slim, slimformer.Int8Dynamic(), progress=False)
    slimformer.quantize_(slim, slimformer.Int8Embeddings(), progress=False)
    expected = eager_outputs(slim, minilm_tokenizer)
    out = slimformer.save(slim, tmp_path / "q")
    reloaded = slimformer.load(out, runtime="eager")

    table = reloaded.model.bert.embeddings.word_embeddings
    assert type(table) is Int8Embedding
    original = slim.model.bert.embeddings.word_embeddings
    assert torch.equal(table.qweight, original.qweight)
    assert torch.equal(table.scales, original.scales)
    assert torch.equal(eager_outputs(reloaded, minilm_tokenizer), expected)
    methods = [m["method"] for m in reloaded.compression["methods"]]
    assert methods == ["int8_dynamic", "int8_embedding"]

    before, after = safetensors_tensor_bytes(tiny_bert_cls_dir), safetensors_tensor_bytes(out)
    vocab, dim = table.qweight.shape
    assert before[f"{WORD}.weight"] == vocab * dim * 4
    assert after[f"{WORD}.qweight"] == vocab * dim  # a quarter of fp32
    assert after[f"{WORD}.scales"] == vocab * 2  # plus one fp16 scale a row
    assert f"{WORD}.weight" not in after


@pytest.mark.skipif(not compiler_available(), reason="needs a C++ compiler")
def test_reloaded_model_runs_under_the_default_compiled_runtime(
    tiny_bert_cls_dir, minilm_tokenizer, tmp_path
):
    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    for config in (slimformer.Int8Dynamic(), slimformer.Int8Embeddings()):
        slimformer.quantize_(slim, config, progress=False)
    reloaded = slimformer.load(slimformer.save(slim, tmp_path / "q"))
    assert reloaded.runtime == "compile"
    ids = torch.randint(1000, 2000, (3, 10), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        compiled = reloaded(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        eager = reloaded.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert torch.allclose(compiled, eager, atol=0.05, rtol=0.05)


# --- tied input and output embeddings ---------------------------------------------------


@pytest.mark.parametrize(
    ("model_dir", "table"),
    [("tiny_llama_dir", "model.embed_tokens"), ("tiny_gpt2_dir", "transformer.wte")],
)
def test_tied_table_is_refused_while_the_head_shares_it(request, model_dir, table):
    slim = slimformer.load(request.getfixturevalue(model_dir), runtime="eager")
    head_before = slim.model.lm_head.weight.clone()
    with pytest.raises(SlimformerError, match=f"{table} is tied to the output head") as info:
        slimformer.quantize_(slim, slimformer.Int8Embeddings(), progress=False)
    assert "parts: [attention, mlp, head]" in str(info.value) and "\n" not in str(info.value)
    assert not compressed_modules(slim.model)
    assert slim.model.lm_head.weight is slim.model.get_input_embeddings().weight
    assert torch.equal(slim.model.lm_head.weight, head_before)


def test_tied_table_is_free_once_the_head_is_compressed(tiny_llama_dir, minilm_tokenizer, tmp_path):
    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    parts = ["attention", "mlp", "head"]
    slimformer.quantize_(slim, slimformer.Int8Dynamic(parts=parts), progress=False)
    slimformer.quantize_(slim, slimformer.Int8Embeddings(), progress=False)
    assert not slim.model.config.tie_word_embeddings
    assert type(slim.model.lm_head) is Int8DynamicLinear
    assert type(slim.model.model.embed_tokens) is Int8Embedding
    expected = eager_outputs(slim, minilm_tokenizer)
    reloaded = slimformer.load(slimformer.save(slim, tmp_path / "q"), runtime="eager")
    assert type(reloaded.model.model.embed_tokens) is Int8Embedding
    assert type(reloaded.model.lm_head) is Int8DynamicLinear
    assert torch.equal(eager_outputs(reloaded, minilm_tokenizer), expected)


def test_example_recipe_runs_both_stages():
    recipe = Recipe.load(Path(__file__).resolve().parents[3] / "examples" / "int8-embeddings.yaml")
    assert [stage.method for stage in recipe.stages] == ["int8_dynamic", "int8_embedding"]
