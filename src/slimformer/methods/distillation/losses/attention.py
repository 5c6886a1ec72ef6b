"""Attention-score MSE (TinyBERT): the student's attention scores match the teacher's.

Scores are ``q k^T / sqrt(d)`` per head before the softmax, recomputed from
the captured projections, over pairs of real tokens (past keys only in a
causal model). The comparison is head by head, so head counts must match;
MiniLM's relation loss is the one for students with other head counts.
Llama-family models rotate q and k after the projection (RoPE): their scores
here are the unrotated ones, a close but not exact stand-in.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from slimformer.errors import SlimformerError
from slimformer.methods.distillation.layer_map import LayerMapSpec, resolve_layer_map
from slimformer.methods.distillation.losses.base import LossConfig, LossTerm, masked_mean
from slimformer.methods.distillation.outputs import Needs, Outputs, Shape, pair_mask, split_heads


class AttentionMSE(LossConfig):
    """MSE between mapped layers' attention scores, head by head (TinyBERT)."""

    summary = "MSE of attention scores, head by head (TinyBERT)"
    kind: Literal["attention_mse"] = "attention_mse"
    layer_map: LayerMapSpec = "uniform"

    def _pairs(self, student: Shape, teacher: Shape) -> list[tuple[int, int]]:
        return resolve_layer_map(self.layer_map, student.num_layers, teacher.num_layers, lowest=1)

    def needs(self, student: Shape, teacher: Shape) -> tuple[Needs, Needs]:
        pairs = self._pairs(student, teacher)
        return Needs(qkv=frozenset(s for s, _ in pairs)), Needs(qkv=frozenset(t for _, t in pairs))

    def build(self, student: Shape, teacher: Shape) -> LossTerm:
        if student.num_heads != teacher.num_heads:
            raise SlimformerError(
                f"attention_mse compares heads one to one, but the student has "
                f"{student.num_heads} heads and the teacher {teacher.num_heads}",
                "use the minilm loss, which works across head counts",
            )
        return _AttentionTerm(self._pairs(student, teacher))


class _AttentionTerm(LossTerm):
    def __init__(self, pairs: list[tuple[int, int]]) -> None:
        super().__init__()
        self.pairs = pairs

    def forward(self, student: Outputs, teacher: Outputs, labels) -> torch.Tensor:
        pairs_mask = pair_mask(student.mask, student.shape.causal)
        total = 0.0
        for s_layer, t_layer in self.pairs:
            s = attention_scores(student, s_layer)
            t = attention_scores(teacher, t_layer)
            total = total + masked_mean((s - t).pow(2), pairs_mask)
        return total / len(self.pairs)


def attention_scores(out: Outputs, layer: int) -> torch.Tensor:
    """``[B, H, T, T]`` pre-softmax scores of one layer, k/v heads repeated for GQA."""
    q, k, _ = out.qkv[layer]
    shape = out.shape
    q = split_heads(q.float(), shape.num_heads)
    k = split_heads(k.float(), shape.num_kv_heads)
    k = k.repeat_interleave(shape.num_heads // shape.num_kv_heads, dim=1)
    return q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
