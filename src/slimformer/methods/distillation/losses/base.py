"""The shape every distillation loss takes: a small config and the module it builds.

A config is frozen and validated (a typo in a recipe fails loudly) and
carries a ``weight``, so losses combine as a weighted sum. ``build`` sizes
the loss for one student/teacher pair (a learned projection when widths
differ lives in the built module and trains with the student); ``needs``
says which outputs the two forward passes must collect.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict, PositiveFloat
from torch import nn

from slimformer.methods.distillation.outputs import Needs, Outputs, Shape


class LossConfig(BaseModel):
    """Base of every loss config: a ``kind`` tag and a ``weight`` in the sum."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Short description for ``slimformer methods`` and errors.
    summary: ClassVar[str] = ""
    weight: PositiveFloat = 1.0

    def needs(self, student: Shape, teacher: Shape) -> tuple[Needs, Needs]:
        """What the student's and the teacher's forward passes must collect."""
        raise NotImplementedError

    def build(self, student: Shape, teacher: Shape) -> LossTerm:
        raise NotImplementedError


class LossTerm(nn.Module):
    """A built loss: ``forward(student_outputs, teacher_outputs, labels)`` -> scalar."""

    def forward(
        self, student: Outputs, teacher: Outputs, labels: torch.Tensor | None
    ) -> torch.Tensor:
        raise NotImplementedError


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over positions where ``mask`` is true (broadcast to values)."""
    mask = mask.to(values.dtype).expand_as(values)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def projection(student_width: int, teacher_width: int) -> nn.Module:
    """Identity when widths match (a copied layer starts at zero loss), else learned."""
    if student_width == teacher_width:
        return nn.Identity()
    return nn.Linear(student_width, teacher_width)
