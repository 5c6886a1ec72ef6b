"""How a distillation run scores the student on held-out data, to keep its best weights.

Classifiers are scored by accuracy and, in the same pass, by the mean
cross-entropy against the true labels: accuracy is what the student is for,
but on a small validation split it moves in coarse steps and saturates, so
the loss tells apart the checkpoints that tie on it (see
:func:`slimformer.training.trainer.better`). Causal LMs are scored by mean
token loss, and models without a task score by held-out distillation loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from slimformer.evaluate.perplexity import model_logits
from slimformer.methods.distillation.data import Collator, Item
from slimformer.methods.distillation.objective import DistillObjective
from slimformer.model import SlimModel
from slimformer.training.trainer import Evaluation, TrainConfig

#: Held-out items a forward pass takes at once.
EVAL_BATCH = 32


def accuracy_and_loss(
    student: SlimModel, held: list[Item], max_length: int, train: TrainConfig
) -> Callable[[], Evaluation]:
    """Accuracy on ``held`` (the score) with the mean label cross-entropy (the tie-break)."""
    collate = Collator(held, student.tokenizer, max_length, train.device)

    def evaluate() -> Evaluation:
        correct, total_loss = 0, 0.0
        for start in range(0, len(held), EVAL_BATCH):
            batch = collate(range(start, min(len(held), start + EVAL_BATCH)))
            # called as the test-time evaluation calls it (evaluate.classification.predict)
            inputs = {k: batch.inputs[k] for k in ("input_ids", "attention_mask")}
            logits = model_logits(student.model(**inputs)).float()
            correct += int((logits.argmax(-1) == batch.labels).sum())
            total_loss += float(F.cross_entropy(logits, batch.labels, reduction="sum"))
        return Evaluation("acc", correct / len(held), loss=total_loss / len(held))

    return evaluate


def token_loss(student: SlimModel, held: list[Item], train: TrainConfig):
    """Mean next-token loss over held-out windows (lower is better; it is its own tie-break)."""
    ids = torch.tensor([item.ids for item in held])

    def evaluate() -> Evaluation:
        total = 0.0
        for start in range(0, len(ids), 4):
            batch = ids[start : start + 4].to(train.device)
            logits = student.model(input_ids=batch).logits.float()
            total += float(
                F.cross_entropy(
                    logits[:, :-1].flatten(0, 1), batch[:, 1:].flatten(), reduction="sum"
                )
            )
        return Evaluation("token_loss", total / (ids.shape[0] * (ids.shape[1] - 1)), False)

    return evaluate


def heldout_loss(objective: DistillObjective, collate: Collator, n: int, batch_size: int):
    """Embedding models have no task score: rank checkpoints by held-out distillation loss."""

    def evaluate() -> Evaluation:
        total = 0.0
        for start in range(0, n, batch_size):
            indices = list(range(start, min(n, start + batch_size)))
            total += float(objective(collate(indices))) * len(indices)
        return Evaluation("heldout_loss", total / n, False)

    return evaluate
