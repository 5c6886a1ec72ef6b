"""The data structured pruning scores parts on, and the loss it measures.

Which heads, neurons or layers matter depends on what the model is for: a
classifier is scored on its labelled task data by its task loss (as in
"Are Sixteen Heads Really Better than One?"), a causal LM on calibration text
by its next-token loss. Both come here as the same kind of batch, so every
importance measure is written once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from slimformer.calibration.run import stage_windows
from slimformer.calibration.spec import CalibrationSpec
from slimformer.data.batching import encode_examples
from slimformer.errors import SlimformerError
from slimformer.methods.base import MethodConfig, StageContext
from slimformer.model import SlimModel


class StructuredSettings(MethodConfig):
    """Where structured pruning gets the data it scores parts on."""

    family = "pruning"

    dataset: str | None = Field(
        default=None,
        description="Labelled data (train split) a classifier is scored on, e.g. intent; "
        "other models read `calibration` text.",
    )
    examples: PositiveInt = Field(default=512, description="Labelled examples scored at most.")
    max_length: PositiveInt = Field(default=64, description="Tokens per labelled example.")
    batch_size: PositiveInt = 16
    calibration: CalibrationSpec = CalibrationSpec(samples=16, length=256)


@dataclass
class ScoringBatch:
    """Model inputs, the labels of a classifier batch (None for LMs), and real-token mask."""

    inputs: dict[str, Tensor]
    labels: Tensor | None
    mask: Tensor


def scoring_batches(
    slim: SlimModel, settings: StructuredSettings, context: StageContext
) -> list[ScoringBatch]:
    """Batches of the task data (classifiers) or of calibration windows (other models)."""
    if slim.task == "classification":
        return _labelled_batches(slim, settings)
    windows = stage_windows(slim, settings.calibration, context)
    size = settings.batch_size
    return [
        ScoringBatch(
            inputs={"input_ids": ids},
            labels=ids if slim.task == "causal-lm" else None,
            mask=torch.ones_like(ids, dtype=torch.bool),
        )
        for ids in windows.split(size)
    ]


def _labelled_batches(slim: SlimModel, settings: StructuredSettings) -> list[ScoringBatch]:
    from slimformer.data import labelled_dataset

    if settings.dataset is None:
        raise SlimformerError(
            f"{slim.name} is a classifier: its parts are scored on labelled task data",
            "set `dataset:` to its labelled data (e.g. intent)",
        )
    examples = labelled_dataset(settings.dataset).split("train")[: settings.examples]
    batches = []
    for start in range(0, len(examples), settings.batch_size):
        chunk = examples[start : start + settings.batch_size]
        inputs, labels = encode_examples(slim.tokenizer, chunk, settings.max_length)
        batches.append(ScoringBatch(inputs, labels, inputs["attention_mask"].bool()))
    return batches


def batch_loss(slim: SlimModel, batch: ScoringBatch) -> Tensor:
    """The model's own loss on ``batch``: task cross-entropy, or next-token loss for LMs."""
    if batch.labels is None:
        raise SlimformerError(
            f"{slim.name} is an embedding model: it has no loss to score parts by",
            "use importance `activation` (heads, neurons) or criterion `similarity` (layers)",
        )
    return slim.model(**batch.inputs, labels=batch.labels).loss


@contextmanager
def gradients_to_inputs_only(model: nn.Module) -> Iterator[None]:
    """Autograd on (even inside inference mode) without filling weight gradients.

    Importance needs gradients with respect to masks and activations only;
    weights keep ``requires_grad`` as they had it, afterwards.
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    training = model.training
    for param, _ in flags:
        param.requires_grad_(False)
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)
        model.train(training)


def masked_token_sum(values: Tensor, mask: Tensor) -> Tensor:
    """Sum of ``values`` [batch, tokens, ...] over real tokens only."""
    weights = mask.to(values.dtype).view(*mask.shape, *([1] * (values.dim() - 2)))
    return (values * weights).sum(dim=(0, 1))
