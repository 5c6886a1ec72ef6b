"""Perturbed task copies: seeded, distinct, unlabelled, and never taken from held-out data."""

from __future__ import annotations

import random

import pytest

import slimformer
from slimformer.errors import SlimformerError
from slimformer.methods.distillation import run_distillation, select_layers
from slimformer.methods.distillation.augment import Perturbation, augmented_items, perturb
from slimformer.methods.distillation.data import UNLABELLED, Item

TEXTS = ["book a table for two at the sushi bar tonight", "play some jazz by miles davis"]


def _items() -> list[Item]:
    return [Item(text=text, label=i) for i, text in enumerate(TEXTS)]


def test_copies_are_distinct_unlabelled_and_seeded():
    first = augmented_items(_items(), 5, "[MASK]", seed=3)
    assert first == augmented_items(_items(), 5, "[MASK]", seed=3)
    assert first != augmented_items(_items(), 5, "[MASK]", seed=4)
    assert len(first) == 10 and len({item.text for item in first}) == 10
    assert all(item.label == UNLABELLED and item.text not in TEXTS for item in first)


def test_rates_of_zero_change_nothing_and_masks_use_the_mask_word():
    rng, vocabulary = random.Random(0), ["x"]
    still = Perturbation(p_mask=0.0, p_swap=0.0, p_ngram=0.0)
    assert perturb(TEXTS[0], rng, vocabulary, "[MASK]", still) == TEXTS[0]
    masked = Perturbation(p_mask=1.0, p_swap=0.0, p_ngram=0.0)
    assert set(perturb(TEXTS[1], rng, vocabulary, "[MASK]", masked).split()) == {"[MASK]"}
    assert perturb(TEXTS[1], rng, vocabulary, None, masked) == ""  # no mask token: words drop
    ngram = Perturbation(p_mask=0.0, p_swap=0.0, p_ngram=1.0)
    assert perturb(TEXTS[0], rng, vocabulary, None, ngram) in TEXTS[0]


def test_a_one_word_text_yields_what_it_can():
    copies = augmented_items([Item(text="hi", label=0)], 50, "[MASK]")
    assert 0 < len(copies) < 50 and all(item.text != "hi" for item in copies)


def test_distillation_trains_on_the_copies(tiny_bert_cls_dir, tiny_cls_jsonl):
    teacher = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    student = select_layers(teacher, [0])
    train = {"batch_size": 4, "epochs": 1, "progress": False}
    plain = run_distillation(student, teacher, tiny_cls_jsonl, ["logits"], train=train)
    student = select_layers(teacher, [0])
    widened = run_distillation(student, teacher, tiny_cls_jsonl, ["logits"], augment=2, train=train)
    assert widened.result.steps > plain.result.steps


def test_augment_on_a_causal_lm_is_one_clear_error(tiny_llama_dir, tiny_txt):
    teacher = slimformer.load(tiny_llama_dir, runtime="eager")
    with pytest.raises(SlimformerError, match="augment copies labelled task texts"):
        run_distillation(select_layers(teacher, [1]), teacher, tiny_txt, ["logits"], augment=2)
