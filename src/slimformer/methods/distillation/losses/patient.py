"""Patient knowledge distillation (Sun et al., 2019): normalised [CLS] states of mapped layers.

The student's first-token state at each mapped layer, divided by its L2 norm,
matches the teacher's; ``skip`` (every k-th teacher layer) and ``last`` (the
teacher's last layers) are the paper's two strategies, and the last layer is
left to the logits loss. The first token is [CLS] in BERT-family encoders.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from slimformer.methods.distillation.layer_map import LayerMapSpec, resolve_layer_map
from slimformer.methods.distillation.losses.base import LossConfig, LossTerm, projection
from slimformer.methods.distillation.losses.hidden import hidden_needs
from slimformer.methods.distillation.outputs import Needs, Outputs, Shape


class PatientKD(LossConfig):
    """MSE of L2-normalised [CLS] states at mapped layers (patient KD, skip or last)."""

    summary = "MSE of normalised [CLS] states of mapped layers (patient KD)"
    kind: Literal["patient"] = "patient"
    layer_map: LayerMapSpec = "skip"

    def needs(self, student: Shape, teacher: Shape) -> tuple[Needs, Needs]:
        return hidden_needs(
            resolve_layer_map(self.layer_map, student.num_layers, teacher.num_layers)
        )

    def build(self, student: Shape, teacher: Shape) -> LossTerm:
        pairs = resolve_layer_map(self.layer_map, student.num_layers, teacher.num_layers)
        return _PatientTerm(pairs, projection(student.hidden_size, teacher.hidden_size))


class _PatientTerm(LossTerm):
    def __init__(self, pairs: list[tuple[int, int]], project: torch.nn.Module) -> None:
        super().__init__()
        self.pairs, self.project = pairs, project

    def forward(self, student: Outputs, teacher: Outputs, labels) -> torch.Tensor:
        total = 0.0
        for s_layer, t_layer in self.pairs:
            s = F.normalize(self.project(student.hidden[s_layer][:, 0].float()), dim=-1)
            t = F.normalize(teacher.hidden[t_layer][:, 0].float(), dim=-1)
            total = total + (s - t).pow(2).sum(-1).mean()
        return total / len(self.pairs)
