"""The distillation objective: the weighted sum of the chosen losses on one batch.

It is an ``nn.Module`` holding the student and the built losses (and so any
learned projection), which is exactly what trains and what a checkpoint
saves; the frozen teacher is held outside its parameters and runs in eval
mode without gradients (its own ``requires_grad`` flags are left alone, so
students copied from it later still train).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from slimformer.methods.distillation.data import Batch
from slimformer.methods.distillation.losses import LossConfig
from slimformer.methods.distillation.outputs import Needs, Outputs, Shape, run_model
from slimformer.model import SlimModel


class DistillObjective(nn.Module):
    def __init__(
        self, student: SlimModel, teacher: SlimModel, losses: Sequence[LossConfig]
    ) -> None:
        super().__init__()
        self.student = student.model
        self._slims = (student, teacher)  # a tuple: not registered, the teacher stays frozen
        self.student_shape, self.teacher_shape = Shape.of(student), Shape.of(teacher)
        self.configs = list(losses)
        self.terms = nn.ModuleList(
            c.build(self.student_shape, self.teacher_shape) for c in self.configs
        )
        self.student_needs, self.teacher_needs = Needs(), Needs()
        for config in self.configs:
            s, t = config.needs(self.student_shape, self.teacher_shape)
            self.student_needs, self.teacher_needs = self.student_needs | s, self.teacher_needs | t
        self.last_terms: dict[str, float] = {}

    @property
    def teacher(self) -> SlimModel:
        return self._slims[1]

    def teacher_outputs(self, batch: Batch) -> Outputs:
        teacher = self.teacher
        teacher.model.eval()
        with torch.no_grad():
            return run_model(
                teacher, self.teacher_shape, _inputs(teacher, batch), self.teacher_needs
            )

    def forward(self, batch: Batch) -> torch.Tensor:
        student = self._slims[0]
        teacher_out = batch.teacher if batch.teacher is not None else self.teacher_outputs(batch)
        student_out = run_model(
            student, self.student_shape, _inputs(student, batch), self.student_needs
        )
        total = 0.0
        for config, term in zip(self.configs, self.terms, strict=True):
            value = term(student_out, teacher_out, batch.labels)
            self.last_terms[config.kind] = float(value.detach())
            total = total + config.weight * value
        return total


def _inputs(slim: SlimModel, batch: Batch) -> dict[str, torch.Tensor]:
    """Decoders take no token types; encoders get what the tokenizer made."""
    if slim.task == "causal-lm":
        return {k: v for k, v in batch.inputs.items() if k != "token_type_ids"}
    return batch.inputs
