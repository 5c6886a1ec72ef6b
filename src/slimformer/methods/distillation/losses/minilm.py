"""MiniLM: the last layer's self-attention distribution and value relation (Wang et al.).

The student mimics two distributions of one layer (by default the last of
each): the attention distribution ``softmax(q k^T / sqrt(d))`` and the value
relation ``softmax(v v^T / sqrt(d))``, each compared by KL per query row.
Following MiniLMv2, q, k and v are split into ``relation_heads`` equal slices
whatever the models' own head counts, so a student with fewer or narrower
heads (or another hidden size) can learn from any teacher.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import PositiveInt

from slimformer.errors import SlimformerError
from slimformer.methods.distillation.losses.base import LossConfig, LossTerm, masked_mean
from slimformer.methods.distillation.outputs import Needs, Outputs, Shape, pair_mask, split_heads


class MiniLM(LossConfig):
    """KL of one layer's attention distribution and value relation (MiniLM)."""

    summary = "KL of the last layer's attention and value relations (MiniLM)"
    kind: Literal["minilm"] = "minilm"
    #: Slices q/k/v are cut into; None: the teacher's head count.
    relation_heads: PositiveInt | None = None
    #: 1-based layer numbers; None: the last layer.
    student_layer: PositiveInt | None = None
    teacher_layer: PositiveInt | None = None

    def _layers(self, student: Shape, teacher: Shape) -> tuple[int, int]:
        s = self.student_layer or student.num_layers
        t = self.teacher_layer or teacher.num_layers
        for who, number, count in (
            ("student", s, student.num_layers),
            ("teacher", t, teacher.num_layers),
        ):
            if number > count:
                raise SlimformerError(
                    f"minilm names {who} layer {number}, but the {who} has layers 1..{count}",
                    f"set {who}_layer to at most {count}, or leave it out for the last layer",
                )
        return s, t

    def needs(self, student: Shape, teacher: Shape) -> tuple[Needs, Needs]:
        s, t = self._layers(student, teacher)
        return Needs(qkv=frozenset({s})), Needs(qkv=frozenset({t}))

    def build(self, student: Shape, teacher: Shape) -> LossTerm:
        heads = self.relation_heads or teacher.num_heads
        for who, shape in (("student", student), ("teacher", teacher)):
            width = shape.num_heads * shape.head_dim
            if width % heads:
                raise SlimformerError(
                    f"minilm: the {who}'s attention width {width} does not split into "
                    f"{heads} relation heads",
                    "set relation_heads to a divisor of both models' attention widths",
                )
        return _MiniLMTerm(*self._layers(student, teacher), heads)


class _MiniLMTerm(LossTerm):
    def __init__(self, student_layer: int, teacher_layer: int, heads: int) -> None:
        super().__init__()
        self.student_layer, self.teacher_layer, self.heads = student_layer, teacher_layer, heads

    def forward(self, student: Outputs, teacher: Outputs, labels) -> torch.Tensor:
        pairs = pair_mask(student.mask, student.shape.causal)
        s_q, s_k, s_v = _full_width(student, self.student_layer)
        t_q, t_k, t_v = _full_width(teacher, self.teacher_layer)
        attention = _relation_kl(t_q, t_k, s_q, s_k, self.heads, pairs)
        value = _relation_kl(t_v, t_v, s_v, s_v, self.heads, pairs)
        return attention + value


def _full_width(out: Outputs, layer: int) -> tuple[torch.Tensor, ...]:
    """q, k, v with grouped k/v heads repeated to q's width (identity without GQA)."""
    q, k, v = (x.float() for x in out.qkv[layer])
    groups = out.shape.num_heads // out.shape.num_kv_heads
    if groups > 1:
        k, v = (_repeat_heads(x, out.shape.num_kv_heads, groups) for x in (k, v))
    return q, k, v


def _repeat_heads(x: torch.Tensor, heads: int, groups: int) -> torch.Tensor:
    return split_heads(x, heads).repeat_interleave(groups, dim=1).transpose(1, 2).flatten(2)


def _relation_kl(t_a, t_b, s_a, s_b, heads: int, pairs: torch.Tensor) -> torch.Tensor:
    """Mean over real query rows of KL(teacher relation || student relation)."""
    t_log = _log_relation(t_a, t_b, heads, pairs)
    s_log = _log_relation(s_a, s_b, heads, pairs)
    kl = (t_log.exp() * (t_log - s_log)).masked_fill(~pairs, 0.0).sum(-1)
    rows = pairs.any(-1)
    return masked_mean(kl.clamp_min(0.0), rows)


def _log_relation(a, b, heads: int, pairs: torch.Tensor) -> torch.Tensor:
    a, b = split_heads(a, heads), split_heads(b, heads)
    scores = a @ b.transpose(-1, -2) / math.sqrt(a.shape[-1])
    scores = scores.masked_fill(~pairs, torch.finfo(scores.dtype).min)
    return torch.log_softmax(scores, dim=-1)
