"""Hidden-state losses: MSE through a learned projection (TinyBERT), cosine (DistilBERT).

Both compare the mapped layers' hidden states token by token over real
tokens. When the student is narrower, one learned linear map (shared by all
mapped layers, as TinyBERT's W_h) lifts its states to the teacher's width;
it trains with the student and is dropped afterwards.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from slimformer.methods.distillation.layer_map import LayerMapSpec, resolve_layer_map
from slimformer.methods.distillation.losses.base import (
    LossConfig,
    LossTerm,
    masked_mean,
    projection,
)
from slimformer.methods.distillation.outputs import Needs, Outputs, Shape


class HiddenMSE(LossConfig):
    """MSE between mapped hidden states, projected when widths differ (TinyBERT)."""

    summary = "MSE of mapped hidden states (learned projection if widths differ)"
    kind: Literal["hidden_mse"] = "hidden_mse"
    layer_map: LayerMapSpec = "uniform"
    include_embeddings: bool = True

    def pairs(self, student: Shape, teacher: Shape) -> list[tuple[int, int]]:
        return resolve_layer_map(
            self.layer_map,
            student.num_layers,
            teacher.num_layers,
            include_embeddings=self.include_embeddings,
        )

    def needs(self, student: Shape, teacher: Shape) -> tuple[Needs, Needs]:
        return hidden_needs(self.pairs(student, teacher))

    def build(self, student: Shape, teacher: Shape) -> LossTerm:
        pairs = self.pairs(student, teacher)
        return _HiddenTerm(pairs, projection(student.hidden_size, teacher.hidden_size), "mse")


class HiddenCosine(LossConfig):
    """Cosine embedding loss between mapped hidden states (DistilBERT: the last layer)."""

    summary = "1 - cosine of mapped hidden states (DistilBERT)"
    kind: Literal["hidden_cosine"] = "hidden_cosine"
    layer_map: LayerMapSpec = "final"

    def needs(self, student: Shape, teacher: Shape) -> tuple[Needs, Needs]:
        return hidden_needs(
            resolve_layer_map(self.layer_map, student.num_layers, teacher.num_layers)
        )

    def build(self, student: Shape, teacher: Shape) -> LossTerm:
        pairs = resolve_layer_map(self.layer_map, student.num_layers, teacher.num_layers)
        return _HiddenTerm(pairs, projection(student.hidden_size, teacher.hidden_size), "cosine")


def hidden_needs(pairs: list[tuple[int, int]]) -> tuple[Needs, Needs]:
    """Only the mapped hidden states: the rest are neither kept nor cached."""
    return Needs(hidden=frozenset(s for s, _ in pairs)), Needs(
        hidden=frozenset(t for _, t in pairs)
    )


class _HiddenTerm(LossTerm):
    def __init__(self, pairs: list[tuple[int, int]], project: torch.nn.Module, kind: str) -> None:
        super().__init__()
        self.pairs, self.project, self.kind = pairs, project, kind

    def forward(self, student: Outputs, teacher: Outputs, labels) -> torch.Tensor:
        mask = student.mask.bool()
        total = 0.0
        for s_layer, t_layer in self.pairs:
            s = self.project(student.hidden[s_layer].float())
            t = teacher.hidden[t_layer].float()
            if self.kind == "mse":
                total = total + masked_mean((s - t).pow(2), mask[..., None])
            else:
                cos = F.cosine_similarity(s, t, dim=-1, eps=1e-6)
                total = total + masked_mean((1.0 - cos).clamp_min(0.0), mask)
        return total / len(self.pairs)
