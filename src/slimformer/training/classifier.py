"""Supervised training of a sequence classifier on labelled examples, on the shared trainer.

The cached fine-tune (the zoo's ``minilm-intent``) and the ``finetune`` recipe
stage both train this way. They use the :data:`PLAIN_FINETUNE` procedure:
AdamW at a constant rate without warm-up or clipping, in fp32, with one seeded
generator drawing every epoch's order. That is the loop those models were
first trained with, and the fine-tune cache is keyed by content hash, so the
same data, settings and seed must keep giving bit-identical weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from slimformer.data.batching import encode_examples
from slimformer.data.labels import (
    align_labels,
    config_label_names,
    is_default_names,
    model_label_names,
)
from slimformer.data.types import ClassificationDataset, Example
from slimformer.errors import SlimformerError
from slimformer.training.settings import TrainSettings
from slimformer.training.trainer import TrainConfig, Trainer

#: Tokenised texts and their labels, as :func:`slimformer.data.batching.encode_examples` gives.
LabelledBatch = tuple[dict[str, torch.Tensor], torch.Tensor]

#: The settings under which the trainer runs the original plain fine-tune, bit for bit.
PLAIN_FINETUNE: dict[str, Any] = {
    "warmup": 0.0,
    "schedule": "constant",
    "max_grad_norm": None,
    "shuffle": "single_stream",
    "precision": "fp32",
}


def train_classifier(
    model: nn.Module,
    tokenizer,
    examples: Sequence[Example],
    settings: TrainSettings,
    *,
    max_length: int,
    device: str = "cpu",
    progress: bool = True,
) -> list[float]:
    """Train ``model`` (a ``*ForSequenceClassification``) in place; the mean loss of each epoch."""
    means = EpochMeans(len(examples))

    def loss_fn(batch: LabelledBatch) -> torch.Tensor:
        loss = classifier_loss(model, batch)
        means.add(float(loss.detach()), len(batch[1]))
        return loss

    collate = example_collator(tokenizer, examples, max_length, device)
    config = TrainConfig.of(settings, device, progress)
    Trainer(model, loss_fn, len(examples), collate, config, desc="finetune").fit()
    model.eval()
    return means.result()


def labels_for_model(model: nn.Module, data: ClassificationDataset) -> ClassificationDataset:
    """``data`` in the model's label ids, checked before any training.

    A model with label names must match the dataset's names exactly (in any
    order; training uses the model's ids). A model with only ``LABEL_<i>``
    defaults and as many outputs as the dataset has labels takes the
    dataset's names into its config, so they are saved with it.
    """
    config = getattr(model, "config", None)
    if config is None:
        return data
    names = model_label_names(config)
    if names is not None:
        return align_labels(data, names, require_all=True)[0]
    num_labels = getattr(config, "num_labels", None)
    if num_labels is not None and num_labels != data.num_labels:
        raise SlimformerError(
            f"the model predicts {num_labels} labels but dataset {data.name!r} has "
            f"{data.num_labels} ({', '.join(data.label_names)})",
            "give the model a head with one output per label, or use a dataset of its labels",
        )
    if is_default_names(config_label_names(config)):
        config.id2label = dict(enumerate(data.label_names))
        config.label2id = {name: i for i, name in enumerate(data.label_names)}
    return data


def example_collator(
    tokenizer, examples: Sequence[Example], max_length: int, device: str
) -> Callable[[Sequence[int]], LabelledBatch]:
    """The trainer's ``collate``: item indices to the tokenised examples and their labels."""

    def collate(indices: Sequence[int]) -> LabelledBatch:
        return encode_examples(tokenizer, [examples[i] for i in indices], max_length, device)

    return collate


def classifier_loss(model: nn.Module, batch: LabelledBatch) -> torch.Tensor:
    """The model's own cross-entropy on a labelled batch."""
    inputs, labels = batch
    return model(**inputs, labels=labels).loss


class EpochMeans:
    """The example-weighted mean loss of each pass over ``n_items`` (a cut-short pass: so far)."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items
        self.means: list[float] = []
        self._total, self._seen = 0.0, 0

    def add(self, loss: float, size: int) -> None:
        self._total += loss * size
        self._seen += size
        if self._seen >= self.n_items:
            self.means.append(self._total / self._seen)
            self._total, self._seen = 0.0, 0

    def result(self) -> list[float]:
        partial = [self._total / self._seen] if self._seen else []
        return [*self.means, *partial]
