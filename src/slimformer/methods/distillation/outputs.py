"""What a distillation loss reads from a model: logits, hidden states, q/k/v projections.

Hidden states come from the model's own ``output_hidden_states``; the
attention projections are captured by forward hooks on the q/k/v modules the
architecture adapter names, so attention losses work the same for every
family and every attention kernel (no eager-attention switch is needed to
see attention: scores and relations are recomputed from q and k).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from slimformer.errors import SlimformerError
from slimformer.model import SlimModel


@dataclass(frozen=True)
class Needs:
    """Which outputs a loss reads, down to the layer, so nothing else is kept or cached.

    ``hidden`` holds hidden-state numbers (0 the embeddings, i layer i's output),
    ``qkv`` 1-based layer numbers.
    """

    logits: bool = False
    hidden: frozenset[int] = frozenset()
    qkv: frozenset[int] = frozenset()

    def __or__(self, other: Needs) -> Needs:
        return Needs(self.logits or other.logits, self.hidden | other.hidden, self.qkv | other.qkv)


@dataclass(frozen=True)
class Shape:
    """The geometry losses size themselves by, read through the adapter."""

    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    causal: bool

    @classmethod
    def of(cls, slim: SlimModel) -> Shape:
        layers = slim.adapter.layers()
        config = slim.model.config
        att = layers[0].attention if layers else None
        if att is None:
            raise SlimformerError(
                f"{slim.name}: no attention layers were found (family {slim.adapter.family})",
                "distil BERT-, Llama- or GPT-2-family models",
            )
        hidden = getattr(config, "hidden_size", None) or att.num_heads * att.head_dim
        return cls(
            num_layers=len(layers),
            hidden_size=hidden,
            num_heads=att.num_heads,
            num_kv_heads=att.num_kv_heads,
            head_dim=att.head_dim,
            causal=slim.task == "causal-lm",
        )


@dataclass
class Outputs:
    """One forward pass: logits, the needed hidden states and q/k/v, by layer number."""

    mask: torch.Tensor
    shape: Shape
    logits: torch.Tensor | None = None
    hidden: dict[int, torch.Tensor] = field(default_factory=dict)
    qkv: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict)


def run_model(slim: SlimModel, shape: Shape, inputs: dict, needs: Needs) -> Outputs:
    """Call ``slim.model`` on ``inputs``, collecting what ``needs`` asks for."""
    captured: dict[int, tuple[torch.Tensor, ...]] = {}
    with _capture_qkv(slim, needs.qkv, captured):
        out = slim.model(**inputs, output_hidden_states=bool(needs.hidden))
    logits = getattr(out, "logits", None)
    if needs.logits and logits is None:
        raise SlimformerError(
            f"{slim.name} has no logits (task {slim.task})",
            "use a classifier or a causal LM, or drop the logits loss",
        )
    hidden = {number: out.hidden_states[number] for number in sorted(needs.hidden)}
    return Outputs(inputs["attention_mask"], shape, logits, hidden, captured)


@contextlib.contextmanager
def _capture_qkv(slim: SlimModel, layers: frozenset[int], into: dict) -> Iterator[None]:
    """Hooks that store each requested layer's q, k and v projection outputs."""
    parts = slim.adapter.layers()
    handles = []
    for number in sorted(layers):
        att = parts[number - 1].attention
        if att.q is att.k:  # one fused projection: q, k, v are its output thirds
            handles.append(att.q.register_forward_hook(_fused_hook(into, number)))
            continue
        slots: dict[str, torch.Tensor] = {}
        for name, module in (("q", att.q), ("k", att.k), ("v", att.v)):
            handles.append(module.register_forward_hook(_slot_hook(into, number, slots, name)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _fused_hook(into: dict, number: int):
    def hook(module, args, output):
        into[number] = tuple(output.chunk(3, dim=-1))

    return hook


def _slot_hook(into: dict, number: int, slots: dict, name: str):
    def hook(module, args, output):
        slots[name] = output
        if len(slots) == 3:
            into[number] = (slots["q"], slots["k"], slots["v"])

    return hook


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, T, heads * d]`` -> ``[B, heads, T, d]``."""
    batch, length, width = x.shape
    return x.view(batch, length, heads, width // heads).transpose(1, 2)


def pair_mask(mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """``[B, 1, T, T]`` true where query and key are both real tokens (and key <= query)."""
    valid = mask.bool()
    pairs = valid[:, None, :, None] & valid[:, None, None, :]
    if causal:
        length = mask.shape[1]
        pairs = pairs & torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
    return pairs
