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
from slimformer.data.types import Example
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
