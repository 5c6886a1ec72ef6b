"""Accuracy and macro-F1 of a sequence classifier on a labelled split.

The model is a Hugging Face style classifier called as
``model(input_ids=..., attention_mask=...)`` with ``.logits`` of shape
``[batch, num_labels]``. Macro-F1 is computed here (no scikit-learn): the
unweighted mean of per-class F1 over every class that occurs in the labels or
the predictions, which is scikit-learn's ``f1_score(average="macro")``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from slimformer.data.batching import encode_texts
from slimformer.data.labels import align_labels, missing_labels_note, model_label_names
from slimformer.data.registry import resolve_dataset
from slimformer.data.types import ClassificationDataset, Dataset
from slimformer.errors import SlimformerError
from slimformer.evaluate.perplexity import inference, model_logits


def evaluate_classification(
    model: nn.Module,
    tokenizer,
    dataset: Dataset | str | os.PathLike,
    split: str = "test",
    batch_size: int = 32,
    max_length: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
    model_labels: Sequence[str] | None = None,
) -> dict:
    """Classify one split; the model must already be on ``device``.

    The dataset's labels are matched by name to ``model_labels`` (default: the
    model's ``config.id2label``), so a file's own label order never matters.
    Returns accuracy, macro_f1, n, correct, predictions (label indices in split
    order), labels, label_names, dataset, split and notes.
    """
    data = classification_dataset(resolve_dataset(dataset))
    data, notes = match_model_labels(model, data, model_labels)
    check_num_labels(model, data)
    examples = data.split(split)
    if not examples:
        raise SlimformerError(
            f"split {split!r} of dataset {data.name!r} is empty", "use another split"
        )
    texts = [example.text for example in examples]
    predictions = predict(model, tokenizer, texts, batch_size, max_length, device, progress)
    labels = [example.label for example in examples]
    correct = sum(p == y for p, y in zip(predictions, labels, strict=True))
    return {
        "accuracy": correct / len(labels),
        "macro_f1": macro_f1(labels, predictions),
        "n": len(labels),
        "correct": correct,
        "predictions": predictions,
        "labels": labels,
        "label_names": list(data.label_names),
        "dataset": data.name,
        "split": split,
        "notes": notes,
    }


def classification_dataset(data: Dataset) -> ClassificationDataset:
    """Only labelled datasets can be classified; say which ones are."""
    if not isinstance(data, ClassificationDataset):
        raise SlimformerError(
            f"dataset {data.name!r} has no labels, so it cannot measure classification",
            "use intent, multiemo, polarity or a .jsonl/.csv file with labels",
        )
    return data


def match_model_labels(
    model: nn.Module, data: ClassificationDataset, model_labels: Sequence[str] | None
) -> tuple[ClassificationDataset, list[str]]:
    """``data`` in the model's label ids when the model names its labels; and notes.

    A model label the dataset lacks is allowed (scoring a subset of classes is
    honest) but noted and warned about; a label the model does not know is an error.
    """
    if model_labels is None:
        model_labels = model_label_names(getattr(model, "config", None))
    if model_labels is None:
        return data, []
    data, missing = align_labels(data, model_labels, require_all=False)
    if not missing:
        return data, []
    note = missing_labels_note(data, missing)
    warnings.warn(note, UserWarning, stacklevel=3)
    return data, [note]


def check_num_labels(model: nn.Module, data: ClassificationDataset) -> None:
    """A head with the wrong number of outputs gives meaningless accuracy: refuse it."""
    num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    if num_labels is not None and num_labels != data.num_labels:
        raise SlimformerError(
            f"the model predicts {num_labels} labels but dataset {data.name!r} has "
            f"{data.num_labels} ({', '.join(data.label_names)})",
            "use a classifier fine-tuned on this dataset",
        )


def predict(
    model: nn.Module,
    tokenizer,
    texts: list[str],
    batch_size: int = 32,
    max_length: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> list[int]:
    """The argmax label index of each text, batched and truncated to ``max_length``."""
    if getattr(tokenizer, "pad_token", "") is None:
        raise SlimformerError(
            "the tokenizer has no padding token, so texts cannot be batched",
            "set tokenizer.pad_token = tokenizer.eos_token before evaluating",
        )
    predictions: list[int] = []
    with (
        inference(model),
        tqdm(total=len(texts), desc="classify", unit="text", disable=not progress) as bar,
    ):
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            encoded = encode_texts(tokenizer, batch, max_length, device)
            logits = model_logits(
                model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"])
            )
            predictions.extend(logits.argmax(dim=-1).tolist())
            bar.update(len(batch))
    return predictions


def macro_f1(labels: list[int], predictions: list[int]) -> float:
    """Mean F1 over the classes seen in labels or predictions (F1 = 2TP / (2TP + FP + FN))."""
    classes = sorted(set(labels) | set(predictions))
    if not classes:
        return 0.0
    scores = []
    for cls in classes:
        tp = sum(p == cls and y == cls for p, y in zip(predictions, labels, strict=True))
        fp = sum(p == cls and y != cls for p, y in zip(predictions, labels, strict=True))
        fn = sum(p != cls and y == cls for p, y in zip(predictions, labels, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)
