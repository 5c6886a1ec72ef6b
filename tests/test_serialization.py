"""Saving and reloading compressed models as Hugging Face folders."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

import slimformer
from conftest import SAMPLE_TEXTS as TEXTS
from conftest import eager_outputs
from slimformer.errors import SlimformerError
from slimformer.evaluate.size import linear_weight_bytes, safetensors_tensor_bytes
from slimformer.nn import Int8DynamicLinear, compressed_modules


def saved_dtypes(folder) -> dict[str, str]:
    dtypes = {}
    with safe_open(folder / "model.safetensors", "pt") as handle:
        for key in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
            dtypes[key] = handle.get_slice(key).get_dtype()
    return dtypes


@pytest.fixture(params=["tiny_bert_dir", "tiny_bert_cls_dir", "tiny_llama_dir"])
def model_dir(request):
    return request.getfixturevalue(request.param)


@pytest.fixture()
def quantized_cls(tiny_bert_cls_dir):
    slim = slimformer.load(tiny_bert_cls_dir)
    slimformer.quantize_(slim, slimformer.Int8Dynamic(), progress=False)
    return slim


@pytest.fixture()
def saved_cls(quantized_cls, tmp_path):
    return slimformer.save(quantized_cls, tmp_path / "saved")


def test_round_trip_is_bit_exact(model_dir, minilm_tokenizer, tmp_path):
    slim = slimformer.load(model_dir)
    fp32_bytes = safetensors_tensor_bytes(model_dir)
    fp32_linear = linear_weight_bytes(fp32_bytes, slim.model)
    slimformer.quantize_(slim, slimformer.Int8Dynamic(), progress=False)
    expected = eager_outputs(slim, minilm_tokenizer)

    out = slimformer.save(slim, tmp_path / "q")
    reloaded = slimformer.load(out)
    assert type(reloaded.model) is type(slim.model)
    assert reloaded.task == slim.task
    assert reloaded.tokenizer is not None
    assert set(compressed_modules(reloaded.model)) == set(compressed_modules(slim.model))
    assert torch.equal(eager_outputs(reloaded, minilm_tokenizer), expected)
    for name, module in compressed_modules(reloaded.model).items():
        original = slim.model.get_submodule(name)
        assert torch.equal(module.weight, original.weight)
        assert torch.equal(module.weight_scale, original.weight_scale)

    meta = json.loads((out / "config.json").read_text())["slimformer"]
    assert meta["format_version"] == 1
    assert meta["quant_method"] == "int8_dynamic_linear"
    assert set(meta["modules"]) == set(compressed_modules(slim.model))
    some = next(iter(meta["modules"].values()))
    assert some["kind"] == "int8_dynamic_linear" and set(some["spec"]) == {
        "in_features",
        "out_features",
        "bias",
    }
    assert meta["methods"][0]["method"] == "int8_dynamic"
    assert reloaded.compression["methods"] == meta["methods"]

    dtypes = saved_dtypes(out)
    for name in meta["modules"]:
        assert dtypes[f"{name}.weight"] == "I8"
        assert dtypes[f"{name}.weight_scale"] == "F32"

    # the quantized layers' tensors (codes, scales, biases) take under 30% of their fp32 bytes
    int8_bytes = safetensors_tensor_bytes(out)
    names = set(meta["modules"])

    def owned(tensor_bytes):
        return sum(n for key, n in tensor_bytes.items() if key.rsplit(".", 1)[0] in names)

    assert owned(int8_bytes) < 0.30 * owned(fp32_bytes)
    # and all linear weights together (the fp32 head included) shrink too
    int8_linear = linear_weight_bytes(int8_bytes, reloaded.model)
    assert int8_linear < 0.35 * fp32_linear


def test_llama_linear_weights_under_30_percent(tiny_llama_dir, tmp_path):
    slim = slimformer.load(tiny_llama_dir)
    fp32 = linear_weight_bytes(safetensors_tensor_bytes(tiny_llama_dir), slim.model)
    slimformer.quantize_(slim, slimformer.Int8Dynamic(), progress=False)
    out = slimformer.save(slim, tmp_path / "q")
    int8 = linear_weight_bytes(safetensors_tensor_bytes(out), slim.model)
    assert int8 < 0.30 * fp32


def test_tied_embeddings_stay_tied(tiny_llama_dir, minilm_tokenizer, tmp_path):
    slim = slimformer.load(tiny_llama_dir)
    slimformer.quantize_(slim, slimformer.Int8Dynamic(), progress=False)
    out = slimformer.save(slim, tmp_path / "q")
    assert "lm_head.weight" not in saved_dtypes(out)
    reloaded = slimformer.load(out)
    assert reloaded.model.lm_head.weight is reloaded.model.model.embed_tokens.weight
    assert reloaded.config.tie_word_embeddings


def test_quantized_tied_head_is_not_retied(tiny_llama_dir, minilm_tokenizer, tmp_path):
    """A compressed lm_head must survive reloading instead of being re-tied to the embedding."""
    slim = slimformer.load(tiny_llama_dir)
    slimformer.quantize_(slim, slimformer.Int8Dynamic(parts=["head", "mlp"]), progress=False)
    assert type(slim.model.lm_head) is Int8DynamicLinear
    expected = eager_outputs(slim, minilm_tokenizer)
    reloaded = slimformer.load(slimformer.save(slim, tmp_path / "q"))
    assert type(reloaded.model.lm_head) is Int8DynamicLinear
    assert reloaded.model.lm_head.weight.dtype == torch.int8
    assert torch.equal(eager_outputs(reloaded, minilm_tokenizer), expected)


def test_plain_model_round_trip(tiny_bert_cls_dir, minilm_tokenizer, tmp_path):
    slim = slimformer.load(tiny_bert_cls_dir)
    reloaded = slimformer.load(slimformer.save(slim, tmp_path / "plain"))
    assert not compressed_modules(reloaded.model)
    assert reloaded.config.id2label == slim.config.id2label
    assert torch.equal(
        eager_outputs(reloaded, minilm_tokenizer), eager_outputs(slim, minilm_tokenizer)
    )


def test_save_a_bare_module(tiny_bert_cls_dir, minilm_tokenizer, tmp_path):
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(tiny_bert_cls_dir).eval()
    slimformer.quantize_(model, slimformer.Int8Dynamic(), progress=False)
    out = slimformer.save(model, tmp_path / "bare")
    assert not (out / "tokenizer.json").exists()
    reloaded = slimformer.load(out)
    inputs = minilm_tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(reloaded.model(**inputs).logits, model(**inputs).logits)


def test_folder_without_tokenizer_loads_without_one(quantized_cls, tmp_path):
    out = slimformer.save(quantized_cls.model, tmp_path / "bare")
    assert slimformer.load(out).tokenizer is None


def test_save_refuses_a_non_empty_folder(quantized_cls, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SlimformerError, match=r"already exists and is not empty.*--overwrite"):
        slimformer.save(quantized_cls, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no temporary folder left behind


def test_save_refuses_an_inf_scale(quantized_cls, tmp_path):
    layer = quantized_cls.model.bert.encoder.layer[0].output.dense
    layer.weight_scale[5] = float("inf")
    with pytest.raises(SlimformerError, match="refusing to save non-finite values") as caught:
        slimformer.save(quantized_cls, tmp_path / "out")
    assert "bert.encoder.layer.0.output.dense.weight_scale (1 NaN/inf)" in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary folder left


def test_save_into_an_empty_folder_and_overwrite(quantized_cls, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    slimformer.save(quantized_cls, out)
    assert (out / "config.json").is_file()
    (out / "stale.txt").write_text("old")
    slimformer.save(quantized_cls, out, overwrite=True)
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_save_refuses_a_file(quantized_cls, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(SlimformerError, match="exists and is a file"):
        slimformer.save(quantized_cls, target, overwrite=True)


def damage(saved, tmp_path, edit):
    copy = tmp_path / "damaged"
    shutil.copytree(saved, copy)
    edit(copy)
    return copy


def drop_tensor(key):
    def edit(folder):
        state = load_file(folder / "model.safetensors")
        del state[key]
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})

    return edit


def edit_config(change):
    def edit(folder):
        config = json.loads((folder / "config.json").read_text())
        change(config)
        (folder / "config.json").write_text(json.dumps(config))

    return edit


QUERY = "bert.encoder.layer.0.attention.self.query"


def _forget_module(config):
    del config["slimformer"]["modules"][QUERY]


def _unknown_kind(config):
    config["slimformer"]["modules"][QUERY]["kind"] = "int3_magic"


def _newer_format(config):
    config["slimformer"]["format_version"] = 99


def _corrupt_json(folder):
    (folder / "config.json").write_text("{not json")


def _no_weights(folder):
    (folder / "model.safetensors").unlink()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (drop_tensor(f"{QUERY}.weight_scale"), r"does not match its config \(missing \["),
        (drop_tensor("classifier.weight"), r"missing \['classifier\.weight'\]"),
        (edit_config(_forget_module), r"unexpected \['bert\.encoder\.layer\.0"),
        (edit_config(_unknown_kind), r"module kind 'int3_magic'"),
        (edit_config(_newer_format), r"saved in slimformer format 99, newer"),
        (_corrupt_json, r"could not read a model config"),
        (_no_weights, r"no \.safetensors file"),
    ],
)
def test_damaged_folder(saved_cls, tmp_path, edit, match):
    folder = damage(saved_cls, tmp_path, edit)
    with pytest.raises(SlimformerError, match=match) as info:
        slimformer.load(folder)
    assert "\n" not in str(info.value)


def _wrong_shape(config):
    config["slimformer"]["modules"][QUERY]["spec"]["in_features"] = 16


def _unknown_module(config):
    modules = config["slimformer"]["modules"]
    modules["bert.nowhere.dense"] = modules[QUERY]


def _truncate(folder):
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])


@pytest.mark.parametrize(
    "edit", [edit_config(_wrong_shape), edit_config(_unknown_module), _truncate]
)
def test_damaged_folder_other_ways(saved_cls, tmp_path, edit):
    with pytest.raises(SlimformerError):
        slimformer.load(damage(saved_cls, tmp_path, edit))


def test_loaded_model_sizes_count_int8(saved_cls, quantized_cls):
    from slimformer.evaluate.size import count_parameters

    reloaded = slimformer.load(saved_cls)
    assert count_parameters(reloaded.model) == count_parameters(quantized_cls.model)
    assert isinstance(reloaded.model.classifier, nn.Linear)


def test_bare_module_keeps_its_method_record(tiny_bert_cls_dir, tmp_path):
    """quantize_ on a plain nn.Module, then save: config.json still lists what ran."""
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(tiny_bert_cls_dir)
    slimformer.quantize_(model, slimformer.Int8Dynamic(), progress=False)
    slimformer.save(model, tmp_path / "bare")
    meta = json.loads((tmp_path / "bare" / "config.json").read_text())["slimformer"]
    assert [m["method"] for m in meta["methods"]] == ["int8_dynamic"]
