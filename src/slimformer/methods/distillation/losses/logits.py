"""Logits distillation (Hinton et al., 2015): KL at a temperature, mixed with the hard label.

``loss = (1 - hard_weight) * T^2 * KL(teacher_T || student_T) + hard_weight * CE(student, y)``.
The T^2 factor keeps the soft gradients' size independent of T. Unlabelled
transfer items (label -100) contribute the soft term only: the teacher labels
them. For causal LMs both terms are per token over real tokens (token-level
KL; the hard label is the next token).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveFloat

from slimformer.methods.distillation.losses.base import LossConfig, LossTerm, masked_mean
from slimformer.methods.distillation.outputs import Needs, Outputs, Shape


class LogitsKD(LossConfig):
    """KL divergence of softened logits, mixed with the hard-label loss (Hinton)."""

    summary = "KL of temperature-softened logits + hard-label cross-entropy"
    kind: Literal["logits"] = "logits"
    temperature: PositiveFloat = 2.0
    hard_weight: float = Field(default=0.5, ge=0.0, le=1.0)

    def needs(self, student: Shape, teacher: Shape) -> tuple[Needs, Needs]:
        return Needs(logits=True), Needs(logits=True)

    def build(self, student: Shape, teacher: Shape) -> LossTerm:
        return _LogitsTerm(self.temperature, self.hard_weight)


class _LogitsTerm(LossTerm):
    def __init__(self, temperature: float, hard_weight: float) -> None:
        super().__init__()
        self.temperature, self.hard_weight = temperature, hard_weight

    def forward(self, student: Outputs, teacher: Outputs, labels) -> torch.Tensor:
        s, t = student.logits.float(), teacher.logits.float()
        causal = student.shape.causal
        soft = self._soft(s, t, student.mask if causal else None)
        if self.hard_weight == 0.0:
            return soft
        hard = _causal_ce(s, labels, student.mask) if causal else _labelled_ce(s, labels)
        if hard is None:
            return soft
        return (1.0 - self.hard_weight) * soft + self.hard_weight * hard

    def _soft(self, s, t, mask) -> torch.Tensor:
        temp = self.temperature
        per_item = F.kl_div(
            F.log_softmax(s / temp, dim=-1),
            F.log_softmax(t / temp, dim=-1),
            log_target=True,
            reduction="none",
        ).sum(-1)
        per_item = per_item.clamp_min(0.0)  # rounding can dip a hair below zero
        value = per_item.mean() if mask is None else masked_mean(per_item, mask.bool())
        return value * temp * temp


def _labelled_ce(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
    if labels is None or not bool((labels >= 0).any()):
        return None
    return F.cross_entropy(logits, labels, ignore_index=-100)


def _causal_ce(logits: torch.Tensor, input_ids: torch.Tensor | None, mask) -> torch.Tensor | None:
    """Next-token loss over real tokens; ``input_ids`` are the labels of a causal LM."""
    if input_ids is None:
        return None
    target = input_ids[:, 1:].masked_fill(~mask[:, 1:].bool(), -100)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), target.flatten(), ignore_index=-100)
