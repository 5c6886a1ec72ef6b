"""Training items for distillation: labelled task data, teacher-labelled transfer text, LM windows.

Transfer data often matters more than the loss: the teacher labels any text
(its soft outputs are the targets), so a small labelled set can be widened
with sentences from a large unlabelled one. Transfer items carry label -100
and only the soft losses see them. Causal LMs learn from token windows.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from slimformer.data.batching import encode_labelled
from slimformer.data.registry import resolve_dataset
from slimformer.data.tokens import tokenize_text
from slimformer.data.types import ClassificationDataset
from slimformer.errors import SlimformerError
from slimformer.methods.distillation.outputs import Outputs
from slimformer.training.classifier import labels_for_model

UNLABELLED = -100
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class Item:
    """A text (with its label or -100) or, for causal LMs, a window of token ids."""

    text: str | None = None
    label: int = UNLABELLED
    ids: tuple[int, ...] | None = None


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor | None
    indices: list[int]
    #: The teacher's outputs when they come from the on-disk cache (else computed live).
    teacher: Outputs | None = None


def task_items(
    dataset, split: str = "train", model: nn.Module | None = None
) -> tuple[list[Item], ClassificationDataset]:
    """Labelled items from a classification dataset's ``split``, in ``model``'s label ids.

    With ``model``, the dataset's labels are matched to the model's by name
    (a mismatch is refused before any training; see ``labels_for_model``).
    """
    data = resolve_dataset(dataset)
    if not isinstance(data, ClassificationDataset):
        raise SlimformerError(
            f"dataset {data.name!r} has no labels, so it cannot be the task data of a classifier",
            "use a labelled dataset (intent, multiemo, .jsonl/.csv), and pass text as transfer",
        )
    if model is not None:
        data = labels_for_model(model, data)
    return [Item(text=e.text, label=e.label) for e in data.split(split)], data


def transfer_items(dataset, limit: int | None = None, seed: int = 0) -> list[Item]:
    """Unlabelled sentences from the train split of any dataset, shuffled, at most ``limit``."""
    data = resolve_dataset(dataset)
    sentences = [s for text in data.texts("train") for s in split_sentences(text)]
    random.Random(seed).shuffle(sentences)
    if limit is not None:
        sentences = sentences[:limit]
    return [Item(text=s) for s in sentences]


def split_sentences(text: str, min_words: int = 4, max_words: int = 60) -> list[str]:
    """Sentences of ``text`` with a sensible number of words (headings and lists dropped)."""
    parts = (part.strip() for part in _SENTENCE_END.split(text))
    return [p for p in parts if min_words <= len(p.split()) <= max_words]


def lm_windows(tokenizer, dataset, split: str, length: int, limit: int | None) -> list[Item]:
    """Consecutive, non-overlapping token windows of ``length`` from one split."""
    stream = tokenize_text(tokenizer, resolve_dataset(dataset).joined(split))
    count = stream.numel() // length
    if limit is not None:
        count = min(count, limit)
    return [Item(ids=tuple(stream[i * length : (i + 1) * length].tolist())) for i in range(count)]


def holdout(items: list[Item], fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Split off a seeded ``fraction`` of ``items`` for evaluation: (train, held out)."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    cut = max(1, round(len(items) * fraction)) if fraction > 0 else 0
    held = sorted(order[:cut])
    rest = sorted(order[cut:])
    return [items[i] for i in rest], [items[i] for i in held]


class Collator:
    """Turns item indices into a padded batch the student and the teacher both read."""

    def __init__(self, items: Sequence[Item], tokenizer, max_length: int, device: str) -> None:
        self.items, self.tokenizer = items, tokenizer
        self.max_length, self.device = max_length, device

    def __call__(self, indices: Sequence[int]) -> Batch:
        chosen = [self.items[i] for i in indices]
        if chosen[0].ids is not None:
            ids = torch.tensor([item.ids for item in chosen])
            inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            return Batch(
                _to(inputs, self.device), inputs["input_ids"].to(self.device), list(indices)
            )
        texts, labels = [item.text for item in chosen], [item.label for item in chosen]
        inputs, targets = encode_labelled(
            self.tokenizer, texts, labels, self.max_length, self.device
        )
        return Batch(inputs, targets, list(indices))


def _to(inputs: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {key: value.to(device) for key, value in inputs.items()}
