"""The bundled models, end to end, against the user's real cache.

minilm-intent (a fine-tune) and smollm2-135m (a GGUF conversion) are built
once and cached in ~/.cache/slimformer (or $SLIMFORMER_CACHE as it was before
the tests started); these tests reuse them and build them only if missing.
Run only these with ``pytest -m integration``, or skip them with
``pytest -m "not integration"``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import slimformer
from slimformer.evaluate.size import linear_weight_bytes, safetensors_tensor_bytes
from slimformer.nn import compressed_modules
from slimformer.zoo import resolve

pytestmark = pytest.mark.integration

INTENTS = {
    "add_to_playlist",
    "book_restaurant",
    "get_weather",
    "play_music",
    "rate_book",
    "search_creative_work",
    "search_screening_event",
}


@pytest.fixture()
def intent_model(user_cache):
    return slimformer.load("minilm-intent", runtime="eager", progress=False)


def logits(slim, texts):
    inputs = slim.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return slim.model(**inputs).logits


def test_minilm_is_an_encoder(user_cache):
    slim = slimformer.load("minilm", progress=False)
    assert type(slim.model).__name__ == "BertModel"
    assert slim.task == "embedding"
    assert slim.tokenizer is not None and len(slim.tokenizer) == 30522
    assert slim.adapter.describe() == {
        "family": "bert",
        "num_layers": 6,
        "num_heads": 12,
        "num_kv_heads": 12,
        "head_dim": 32,
    }


def test_minilm_intent_has_seven_intents(intent_model):
    assert type(intent_model.model).__name__ == "BertForSequenceClassification"
    assert intent_model.task == "classification"
    assert set(intent_model.config.id2label.values()) == INTENTS
    assert intent_model.config.num_labels == 7


def test_demo_path_quality_size_and_reload(intent_model, tmp_path):
    """The project's quality gate: int8 costs at most one intent test example."""
    fp32 = slimformer.evaluate(intent_model, "intent", progress=False)
    assert fp32["metrics"]["n"] == 193
    fp32_linear = linear_weight_bytes(
        safetensors_tensor_bytes(resolve("minilm-intent", progress=False)), intent_model.model
    )

    slimformer.quantize_(intent_model, slimformer.Int8Dynamic(), progress=False)
    assert len(compressed_modules(intent_model.model)) == 6 * 6
    assert isinstance(intent_model.model.classifier, nn.Linear)
    int8 = slimformer.evaluate(intent_model, "intent", progress=False)
    assert int8["metrics"]["correct"] >= fp32["metrics"]["correct"] - 1
    assert int8["value"] > 0.9

    out = slimformer.save(intent_model, tmp_path / "int8")
    int8_linear = linear_weight_bytes(safetensors_tensor_bytes(out), intent_model.model)
    assert int8_linear <= 0.30 * fp32_linear

    reloaded = slimformer.load(out, runtime="eager")
    texts = ["play some jazz by miles davis", "will it rain in paris tomorrow"]
    expected = logits(intent_model, texts)
    assert torch.equal(logits(reloaded, texts), expected)
    names = [intent_model.config.id2label[i] for i in expected.argmax(-1).tolist()]
    assert names == ["play_music", "get_weather"]


def test_smollm_perplexity_on_wiki(user_cache):
    slim = slimformer.load("smollm2-135m", progress=False)
    assert type(slim.model).__name__ == "LlamaForCausalLM"
    assert slim.task == "causal-lm"
    assert slim.adapter.describe()["num_kv_heads"] == 3
    result = slimformer.evaluate(slim, "wiki", max_tokens=1024, progress=False)
    assert result["metric"] == "perplexity"
    assert math.isfinite(result["value"]) and 5 < result["value"] < 200
    assert result["metrics"]["tokens"] > 0


def test_zoo_models_are_cached(user_cache):
    rows = {row["name"]: row for row in slimformer.list_models()}
    assert all(row["installed"] and row["cached"] for row in rows.values()), rows
