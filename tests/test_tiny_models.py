"""The tiny-model builders every test relies on: defaults, overrides, seeding."""

from __future__ import annotations

import torch
from transformers import BertForSequenceClassification, GPT2LMHeadModel, LlamaForCausalLM

from tiny_models import LLAMA, config_like, tiny_bert_config, tiny_gpt2_config, tiny_model


def test_defaults_are_the_fixture_sizes_and_overrides_replace_them():
    config = tiny_bert_config(100, hidden_size=32, num_labels=3)
    assert (config.vocab_size, config.hidden_size, config.intermediate_size) == (100, 32, 256)
    assert config.num_labels == 3
    assert tiny_gpt2_config(100).n_positions == 256


def test_same_seed_same_weights_and_the_named_class():
    first = tiny_model("llama", 100, seed=2)
    second = tiny_model("llama", 100, seed=2)
    assert isinstance(first, LlamaForCausalLM) and first.config.num_key_value_heads == 2
    assert first.config.tie_word_embeddings is LLAMA["tie_word_embeddings"]
    assert all(
        torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True)
    )
    other = tiny_model("bert", 100, seed=1, model_class=BertForSequenceClassification)
    assert isinstance(other, BertForSequenceClassification)


def test_seed_none_leaves_the_generator_alone():
    torch.manual_seed(5)
    built = tiny_model("gpt2", 100, seed=None)
    after_build = torch.rand(3)
    torch.manual_seed(5)
    by_hand = GPT2LMHeadModel(tiny_gpt2_config(100))
    assert torch.equal(torch.rand(3), after_build)
    assert torch.equal(built.transformer.wte.weight, by_hand.transformer.wte.weight)


def test_config_like_keeps_every_other_field():
    base = tiny_bert_config(100, num_labels=3)
    narrower = config_like(base, hidden_size=32)
    assert type(narrower) is type(base) and narrower.hidden_size == 32
    assert {k: v for k, v in narrower.to_dict().items() if k != "hidden_size"} == {
        k: v for k, v in base.to_dict().items() if k != "hidden_size"
    }
