"""Students by width: fewer attention heads, a narrower feed-forward block.

Each layer keeps the teacher's most important heads and FFN neurons (or a
random choice, as a baseline), their weights sliced out of the teacher's
through the architecture adapter. Importance is read from the weights: a
neuron's ``||W_up[j]|| * ||W_down[:, j]||`` (times its gate row under a GLU)
and a head's value-output path ``||W_v[h]|| * ||W_o[:, h]||``. That needs no
data and keeps the teacher's strongest paths; the student then recovers by
distillation.

Heads keep their size, so the config must be able to say "fewer heads of
the same size": Llama-family configs can (``head_dim``), BERT's cannot (its
head size is ``hidden_size / heads``), so BERT students narrow the FFN only.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn

from slimformer.errors import SlimformerError
from slimformer.model import SlimModel
from slimformer.nn.registry import replace_module

Init = Literal["importance", "random"]


def narrow(
    teacher: SlimModel,
    *,
    heads: int | None = None,
    intermediate_size: int | None = None,
    init: Init = "importance",
    seed: int = 0,
) -> SlimModel:
    """A copy of ``teacher`` with ``heads`` heads and ``intermediate_size`` FFN neurons a layer."""
    student = copy.deepcopy(teacher)
    generator = torch.Generator().manual_seed(seed)
    names = {id(m): n for n, m in student.model.named_modules()}
    if intermediate_size is not None:
        _narrow_mlp(student, names, intermediate_size, init, generator)
    if heads is not None:
        _narrow_heads(student, names, heads, init, generator)
    student.refresh_adapter()
    return student


def _keep(scores: torch.Tensor, count: int, init: Init, generator) -> torch.Tensor:
    if init == "random":
        order = torch.randperm(len(scores), generator=generator)
    else:
        order = torch.argsort(scores, descending=True, stable=True)
    return order[:count].sort().values


def _narrow_mlp(slim, names, size: int, init: Init, generator) -> None:
    layers = slim.adapter.layers()
    width = layers[0].mlp.up.weight.shape[0]
    _check_size("intermediate_size", size, width)
    for layer in layers:
        mlp = layer.mlp
        scores = mlp.up.weight.norm(dim=1) * mlp.down.weight.norm(dim=0)
        if mlp.gate is not None:
            scores = scores * mlp.gate.weight.norm(dim=1)
        keep = _keep(scores.detach(), size, init, generator)
        for module in (mlp.up, mlp.gate):
            if module is not None:
                replace_module(slim.model, names[id(module)], _sliced(module, rows=keep))
        replace_module(slim.model, names[id(mlp.down)], _sliced(mlp.down, cols=keep))
    config = slim.model.config
    setattr(config, "n_inner" if hasattr(config, "n_inner") else "intermediate_size", size)


def _narrow_heads(slim, names, heads: int, init: Init, generator) -> None:
    layers = slim.adapter.layers()
    att = layers[0].attention
    config = slim.model.config
    if att.q is att.k or att.num_kv_heads != att.num_heads or not hasattr(config, "head_dim"):
        raise SlimformerError(
            f"{slim.adapter.family} models cannot lose heads here (fused q/k/v, grouped "
            "k/v heads, or a config whose head size follows the head count)",
            "narrow the feed-forward block instead (intermediate_size)",
        )
    _check_size("heads", heads, att.num_heads)
    dim = att.head_dim
    for layer in layers:
        att = layer.attention
        v = att.v.weight.view(att.num_heads, dim, -1).flatten(1).norm(dim=1)
        o = att.o.weight.view(att.o.weight.shape[0], att.num_heads, dim).transpose(0, 1)
        keep = _keep((v * o.flatten(1).norm(dim=1)).detach(), heads, init, generator)
        rows = (keep[:, None] * dim + torch.arange(dim)).flatten()
        for module in (att.q, att.k, att.v):
            replace_module(slim.model, names[id(module)], _sliced(module, rows=rows))
        replace_module(slim.model, names[id(att.o)], _sliced(att.o, cols=rows))
        for attr in ("num_heads", "num_attention_heads", "num_key_value_heads"):
            if isinstance(getattr(att.module, attr, None), int):
                setattr(att.module, attr, heads)
    config.num_attention_heads = heads
    if getattr(config, "num_key_value_heads", None):
        config.num_key_value_heads = heads


def _check_size(name: str, size: int, current: int) -> None:
    if not 1 <= size <= current:
        raise SlimformerError(
            f"{name}={size} is not between 1 and the teacher's {current}",
            f"choose a smaller {name} than the teacher's",
        )


def _sliced(linear: nn.Linear, rows=None, cols=None) -> nn.Linear:
    """A new linear holding the selected output rows / input columns of ``linear``."""
    weight = linear.weight.detach()
    bias = None if linear.bias is None else linear.bias.detach()
    if rows is not None:
        weight = weight[rows]
        bias = None if bias is None else bias[rows]
    if cols is not None:
        weight = weight[:, cols]
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    new = new.to(dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new
