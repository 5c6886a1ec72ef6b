"""The one place tiny random-init models are built: configs by family, models by seed.

Every test that needs a small BERT, Llama or GPT-2 builds it here, so the
sizes live in one table and a test names only what it changes. The defaults
are the shared fixtures' models (tests/conftest.py); a test passes its own
sizes as overrides. Several tests compare numbers between models built by
seed, so building a config draws no random numbers and ``tiny_model`` seeds
right before the model's own initialisation, as the tests always did.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import (
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
)

#: The fixtures' BERT: four heads of 16, an MLP four times as wide.
BERT = {
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 128,
}

#: The fixtures' Llama: grouped-query attention (two heads per key/value) and tied embeddings.
LLAMA = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "tie_word_embeddings": True,
}

#: The fixtures' GPT-2 (bos/eos come from the tokenizer, so callers pass them).
GPT2 = {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 256}


def tiny_bert_config(vocab_size: int, **overrides: Any) -> BertConfig:
    """The fixtures' BERT config, with ``overrides`` replacing or adding fields."""
    return BertConfig(vocab_size=vocab_size, **{**BERT, **overrides})


def tiny_llama_config(vocab_size: int, **overrides: Any) -> LlamaConfig:
    """The fixtures' Llama config, with ``overrides`` replacing or adding fields."""
    return LlamaConfig(vocab_size=vocab_size, **{**LLAMA, **overrides})


def tiny_gpt2_config(vocab_size: int, **overrides: Any) -> GPT2Config:
    """The fixtures' GPT-2 config, with ``overrides`` replacing or adding fields."""
    return GPT2Config(vocab_size=vocab_size, **{**GPT2, **overrides})


#: kind -> (config builder, the model class built when the caller names none).
KINDS = {
    "bert": (tiny_bert_config, BertModel),
    "llama": (tiny_llama_config, LlamaForCausalLM),
    "gpt2": (tiny_gpt2_config, GPT2LMHeadModel),
}


def tiny_model(
    kind: str,
    vocab_size: int,
    *,
    seed: int | None = 0,
    model_class: type[nn.Module] | None = None,
    **overrides: Any,
) -> nn.Module:
    """A random-init ``kind`` model (``model_class`` or the family's plain one), seeded first.

    ``seed=None`` leaves the global generator alone, for tests that never
    seeded. The model comes back as built (training mode): callers that want
    ``eval()`` say so, as before.
    """
    build_config, default_class = KINDS[kind]
    config = build_config(vocab_size, **overrides)
    if seed is not None:
        torch.manual_seed(seed)
    return (model_class or default_class)(config)


def config_like(config: PretrainedConfig, **changes: Any) -> PretrainedConfig:
    """A fresh config of the same class with every field of ``config`` but ``changes``."""
    return type(config)(**{**config.to_dict(), **changes})
