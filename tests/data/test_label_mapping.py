"""Label names are the contract: a labelled file is matched to the model's id2label by name."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slimformer.data import labelled_dataset
from slimformer.data.labels import align_labels, model_label_names
from slimformer.errors import SlimformerError
from slimformer.evaluate.classification import evaluate_classification
from slimformer.methods.apply import apply_method
from slimformer.methods.distillation.data import task_items
from slimformer.methods.finetune.finetune import Finetune
from slimformer.zoo import load

LABELS = ["negative", "neutral", "positive"]  # tiny_bert_cls_dir's id2label, in id order
#: An unbalanced test split, so a wrong mapping changes even a constant predictor's accuracy.
TEST_COUNTS = {"negative": 6, "neutral": 3, "positive": 1}
WORDS = {"negative": "awful", "neutral": "plain", "positive": "great"}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    return path


def _rows(counts: dict[str, int], split: str) -> list[dict]:
    return [
        {
            "text": f"the food was {WORDS.get(label, 'odd')} on day {i}",
            "label": label,
            "split": split,
        }
        for label, count in counts.items()
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def unbalanced_jsonl(tmp_path_factory) -> Path:
    rows = _rows({label: 4 for label in LABELS}, "train") + _rows(TEST_COUNTS, "test")
    return _write(tmp_path_factory.mktemp("labels") / "unbalanced.jsonl", rows)


@pytest.fixture(scope="module")
def cls_slim(tiny_bert_cls_dir):
    return load(str(tiny_bert_cls_dir), runtime="eager", progress=False)


def _reordered(slim, order: list[str]):
    """The same classifier with its head rows and id2label put in ``order``."""
    model = copy.deepcopy(slim.model)
    rows = [LABELS.index(name) for name in order]
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight[rows])
        model.classifier.bias.copy_(model.classifier.bias[rows])
    model.config.id2label = dict(enumerate(order))
    model.config.label2id = {name: i for i, name in enumerate(order)}
    return model


def _score(model, tokenizer, dataset) -> tuple[float, list[str]]:
    result = evaluate_classification(model, tokenizer, dataset, progress=False)
    names = [result["label_names"][p] for p in result["predictions"]]
    return result["accuracy"], names


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(order=st.permutations(LABELS))
def test_any_model_label_order_gives_the_canonical_accuracy(cls_slim, unbalanced_jsonl, order):
    expected = _score(cls_slim.model, cls_slim.tokenizer, unbalanced_jsonl)
    model = _reordered(cls_slim, list(order))
    assert _score(model, cls_slim.tokenizer, unbalanced_jsonl) == expected


def test_shuffled_order_would_score_wrong_without_the_mapping(cls_slim, unbalanced_jsonl):
    """The property above can fail: positional ids give another accuracy for this order."""
    model = _reordered(cls_slim, ["positive", "negative", "neutral"])
    right, _ = _score(model, cls_slim.tokenizer, unbalanced_jsonl)
    model.config.id2label = {i: f"LABEL_{i}" for i in range(3)}  # no names: positional ids
    wrong, _ = _score(model, cls_slim.tokenizer, unbalanced_jsonl)
    assert wrong != right


def test_unknown_label_is_one_line_naming_it_and_the_model_labels(cls_slim, tmp_path):
    rows = _rows({"negative": 2, "furious": 2, "positive": 2}, "test")
    path = _write(tmp_path / "angry.jsonl", rows)
    with pytest.raises(SlimformerError) as info:
        evaluate_classification(cls_slim.model, cls_slim.tokenizer, path, progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert "'furious'" in message and "negative, neutral, positive" in message
    assert "mapping tried: furious->?, negative->0, positive->2" in message


def test_a_model_label_missing_from_the_file_is_scored_with_a_note(cls_slim, tmp_path):
    path = _write(tmp_path / "two.jsonl", _rows({"positive": 2, "negative": 3}, "test"))
    with pytest.warns(UserWarning, match="'neutral'"):
        result = evaluate_classification(cls_slim.model, cls_slim.tokenizer, path, progress=False)
    assert result["label_names"] == LABELS
    assert result["labels"] == [2, 2, 0, 0, 0]
    assert len(result["notes"]) == 1 and "'neutral'" in result["notes"][0]


def test_matching_labels_give_no_note(cls_slim, unbalanced_jsonl):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = evaluate_classification(
            cls_slim.model, cls_slim.tokenizer, unbalanced_jsonl, progress=False
        )
    assert result["notes"] == []


def test_finetune_refuses_mismatched_labels_before_training(tiny_bert_cls_dir, tmp_path):
    path = _write(tmp_path / "two.jsonl", _rows({"negative": 4, "positive": 4}, "train"))
    slim = load(str(tiny_bert_cls_dir), runtime="eager", progress=False)
    before = {k: v.clone() for k, v in slim.model.state_dict().items()}
    with pytest.raises(
        SlimformerError, match=r"no example of the model's label.*'neutral'"
    ) as info:
        apply_method(slim, Finetune(dataset=str(path)), progress=False)
    assert "\n" not in str(info.value)
    after = slim.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_training_uses_the_model_ids_when_names_match_in_another_order(cls_slim, unbalanced_jsonl):
    from slimformer.training.classifier import labels_for_model

    order = ["positive", "negative", "neutral"]
    model = _reordered(cls_slim, order)
    data = labelled_dataset(unbalanced_jsonl)
    aligned = labels_for_model(model, data)
    assert aligned.label_names == order
    for old, new in zip(data.split("train"), aligned.split("train"), strict=True):
        assert data.label_names[old.label] == order[new.label]


def test_distill_task_items_use_the_student_ids(cls_slim, unbalanced_jsonl, tmp_path):
    model = _reordered(cls_slim, ["neutral", "positive", "negative"])
    items, data = task_items(str(unbalanced_jsonl), "test", model=model)
    assert [data.label_names[item.label] for item in items][:6] == ["negative"] * 6
    assert data.label_names == ["neutral", "positive", "negative"]
    path = _write(tmp_path / "bad.jsonl", _rows({"negative": 2, "happy": 2}, "train"))
    with pytest.raises(SlimformerError, match="'happy' the model does not know"):
        task_items(str(path), "train", model=model)


def test_default_named_classifier_takes_the_file_names_and_saves_them(
    minilm_tokenizer, unbalanced_jsonl, tmp_path
):
    from transformers import BertForSequenceClassification

    import slimformer
    from tiny_models import tiny_model

    model = tiny_model(
        "bert",
        len(minilm_tokenizer),
        seed=3,
        model_class=BertForSequenceClassification,
        num_labels=3,
    )
    assert model_label_names(model.config) is None  # LABEL_0.. defaults
    model.save_pretrained(tmp_path / "plain")
    minilm_tokenizer.save_pretrained(tmp_path / "plain")
    slim = load(str(tmp_path / "plain"), runtime="eager", progress=False)
    apply_method(slim, Finetune(dataset=str(unbalanced_jsonl), train={"epochs": 1}), progress=False)
    assert model_label_names(slim.model.config) == LABELS
    slimformer.save(slim, tmp_path / "out")
    again = load(str(tmp_path / "out"), runtime="eager", progress=False)
    assert model_label_names(again.model.config) == LABELS
    assert again.model.config.label2id == {name: i for i, name in enumerate(LABELS)}


def test_default_named_classifier_of_another_size_is_refused(minilm_tokenizer, unbalanced_jsonl):
    from transformers import BertForSequenceClassification

    from slimformer.training.classifier import labels_for_model
    from tiny_models import tiny_model

    model = tiny_model(
        "bert",
        len(minilm_tokenizer),
        seed=3,
        model_class=BertForSequenceClassification,
        num_labels=2,
    )
    with pytest.raises(SlimformerError, match="predicts 2 labels but dataset 'unbalanced' has 3"):
        labels_for_model(model, labelled_dataset(unbalanced_jsonl))


def test_align_labels_keeps_an_already_aligned_dataset(unbalanced_jsonl):
    data = labelled_dataset(unbalanced_jsonl)
    assert align_labels(data, LABELS, require_all=True) == (data, [])
