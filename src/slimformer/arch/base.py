"""One vocabulary for the parts of a transformer.

Compression methods never look at model classes. They ask an adapter for the
layers, the attention projections with their head geometry, the MLP
projections, the embeddings, the norms and the head, and work on those. Adding
a model family means writing one adapter, not touching any method.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from slimformer.arch.inputs import (
    TEXT_SEQUENCE_INPUTS,
    accepts,
    first_parameter,
    forward_inputs,
    random_token_inputs,
    vocab_size_of,
)
from slimformer.arch.task import model_task
from slimformer.errors import SlimformerError

#: The part names every adapter uses when it labels a linear layer.
PARTS = ("embedding", "attention", "mlp", "head", "other")


@dataclass
class AttentionParts:
    """The projections of one attention block and its head geometry.

    A fused projection (GPT-2's ``c_attn``, one linear whose output rows are
    q, then k, then v) is given as ``q``, ``k`` and ``v`` alike: a method that
    needs the three apart tests ``q is k``, and no method acts on it twice.
    """

    module: nn.Module
    q: nn.Module
    k: nn.Module
    v: nn.Module
    o: nn.Module
    num_heads: int
    num_kv_heads: int
    head_dim: int

    @property
    def group_size(self) -> int:
        """Query heads per key/value head (1 without grouped-query attention)."""
        return self.num_heads // self.num_kv_heads


@dataclass
class MLPParts:
    """The projections of one feed-forward block; ``gate`` is None without a GLU."""

    module: nn.Module
    up: nn.Module
    down: nn.Module
    gate: nn.Module | None = None

    @property
    def intermediate_size(self) -> int:
        """Neurons between ``up`` and ``down``: the down projection's input width."""
        return out_features(self.up)


@dataclass(frozen=True)
class LayerSizes:
    """The sizes one layer's weights have: what structured pruning changes per layer."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int


@dataclass
class LayerParts:
    """One repeated block: attention, MLP and the norms around them."""

    index: int
    module: nn.Module
    attention: AttentionParts | None = None
    mlp: MLPParts | None = None
    norms: dict[str, nn.Module] = field(default_factory=dict)

    def sizes(self) -> LayerSizes | None:
        """This layer's head geometry and MLP width, None where the adapter names no parts."""
        att, mlp = self.attention, self.mlp
        if att is None or mlp is None:
            return None
        return LayerSizes(att.num_heads, att.num_kv_heads, att.head_dim, mlp.intermediate_size)


@dataclass
class ScaleGroup:
    """Linears that read the same input, and the module that produced it.

    Activation-aware methods (AWQ, SmoothQuant) multiply the consumers' input
    columns by a per-channel scale and divide the producer's output by it,
    which leaves the model's function unchanged. ``producer`` is None where
    that output is used elsewhere too (a post-norm residual, an activation
    function in between): the scale must then be applied to the input
    explicitly.
    """

    name: str
    producer: nn.Module | None
    consumers: list[nn.Module]


@dataclass
class ResidualBranch:
    """One pre-norm residual branch of a block: ``h = h + output(inner(norm(h)))``.

    ``inputs`` are the linears that read ``norm(h)`` directly (q/k/v, gate/up)
    and ``output`` the linear whose result is the branch's whole contribution
    (o, down). ``call`` runs ``module`` on the normed states with the keyword
    arguments the block itself received (masks, rotary embeddings), as the
    block does. Knowing this lets the calibration engine compute each linear's
    inputs once, from the linears before it already compressed.
    """

    norm: nn.Module
    module: nn.Module
    inputs: list[nn.Module]
    output: nn.Module
    call: Callable[[nn.Module, torch.Tensor, dict[str, Any]], Any]


class OutputRows(nn.Module):
    """Rows ``start:stop`` of a linear's output: one projection of a fused one.

    Only the v rows of a fused q/k/v projection feed the output projection,
    so only they may absorb that projection's input scale (see
    ``ScaleGroup``); this names them without splitting the module. ``weight``
    and ``bias`` are views, so dividing them in place changes the fused layer.
    """

    def __init__(self, linear: nn.Module, start: int, stop: int) -> None:
        super().__init__()
        self.linear = linear
        self.start, self.stop = start, stop

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight[self.start : self.stop]

    @property
    def bias(self) -> torch.Tensor | None:
        bias = self.linear.bias
        return None if bias is None else bias[self.start : self.stop]


class Adapter:
    """Names the parts of one model; subclasses know one family each.

    The base class is the generic fallback: it treats every ``nn.Linear`` as a
    compressible layer labelled ``other`` and the longest ``nn.ModuleList`` as
    the stack of layers, which is all that linear-only methods need.
    """

    family = "generic"

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return True

    # -- taking hold of a model, and letting go of it ---------------------------------
    def prepare(self) -> None:
        """Bring the model into the form methods work on; called when slimformer takes hold.

        Methods act on ``nn.Linear`` only; a family whose layers compute the
        same thing in another module type (GPT-2's ``Conv1D``) swaps them here,
        once, keeping the model's function. It must be idempotent. Nothing to
        do for most families.
        """

    def state_dict_to_save(self) -> dict[str, torch.Tensor] | None:
        """The state dict in the layout the model's own class loads, or None if it already is.

        Saved folders stay loadable by plain transformers, and slimformer's
        loader (which builds that class first) reads them back unchanged;
        a family that :meth:`prepare` changed undoes its changes here.
        """
        return None

    # -- structure -----------------------------------------------------------
    def layer_stack(self) -> nn.ModuleList | None:
        """The container of repeated blocks, the unit the calibration engine walks."""
        lists = [m for m in self.model.modules() if isinstance(m, nn.ModuleList)]
        return max(lists, key=len, default=None)

    def layers(self) -> list[LayerParts]:
        stack = self.layer_stack()
        if stack is None:
            return []
        return [LayerParts(index=i, module=block) for i, block in enumerate(stack)]

    def embeddings(self) -> dict[str, nn.Module]:
        """Every embedding table (plain or compressed) by qualified name."""
        return {name: module for name, module in self.model.named_modules() if is_embedding(module)}

    def token_embedding(self) -> str | None:
        """The name of the table input ids are looked up in, None if the model has none.

        It is the model's own input embedding (``get_input_embeddings``) where
        the model names one; position and token-type tables are the others.
        """
        get_input = getattr(self.model, "get_input_embeddings", None)
        module = get_input() if callable(get_input) else None
        return next((name for name, m in self.embeddings().items() if m is module), None)

    def head(self) -> nn.Module | None:
        """The task head (classifier or LM head), if the model has one."""
        return None

    # -- what the model reads, and what it serves ------------------------------------
    @property
    def task(self) -> str:
        """``causal-lm``, ``classification`` or ``embedding``, from what the model computes."""
        return model_task(self.model, self.head())

    def sequence_inputs(self) -> tuple[str, ...]:
        """Inputs shaped ``[batch, sequence, ...]``, the model's main input first.

        Run-time bucketing pads every one of these (``attention_mask`` with
        zeros, so the padding is masked out); a call with any other tensor
        runs unpadded.
        """
        return TEXT_SEQUENCE_INPUTS

    def example_inputs(
        self, batch: int, seq_len: int, *, seed: int = 0, device: str | torch.device = "cpu"
    ) -> dict[str, torch.Tensor]:
        """Seeded inputs of ``batch`` sequences of ``seq_len`` for timing, memory and warm-up.

        Text models get ids inside the vocabulary and an all-ones mask, the
        same tensors for the same seed on every run.
        """
        return random_token_inputs(vocab_size_of(self.model), batch, seq_len, seed, device)

    def calibration_inputs(self, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, Any]:
        """The forward's keyword arguments for one batch of calibration token ids and mask.

        The mask is passed where the forward takes one, and ``use_cache=False``
        where it takes that; a forward without ``input_ids`` gets the ids as
        its first parameter.
        """
        if not accepts(self.model, "input_ids"):
            name = first_parameter(self.model)
            if name is None:
                raise SlimformerError(
                    f"{type(self.model).__name__}'s forward names no parameter to pass ids as",
                    "give the model an adapter whose calibration_inputs builds its inputs",
                )
            return {name: ids}
        inputs: dict[str, Any] = {"input_ids": ids}
        if accepts(self.model, "attention_mask"):
            inputs["attention_mask"] = mask
        return forward_inputs(self.model, inputs)

    def forward_inputs(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """The forward's keyword arguments for one batch of ready model inputs (a dict).

        Calibration given tensors by name (embeddings, pixels, extra inputs)
        passes them as they are, with ``use_cache=False`` where accepted.
        """
        return forward_inputs(self.model, inputs)

    # -- linear layers, labelled by part ----------------------------------------
    def linear_layers(self) -> dict[str, nn.Linear]:
        """Every ``nn.Linear`` by qualified name, the unit linear-only methods act on."""
        return {
            name: module
            for name, module in self.model.named_modules()
            if isinstance(module, nn.Linear)
        }

    def part_of(self, name: str) -> str:
        """Which part (one of :data:`PARTS`) the module called ``name`` belongs to."""
        module = self.model.get_submodule(name)
        head = self.head()
        if head is not None and (module is head or _contains(head, module)):
            return "head"
        if is_embedding(module):
            return "embedding"
        for layer in self.layers():
            if layer.attention is not None and _contains(layer.attention.module, module):
                return "attention"
            if layer.mlp is not None and _contains(layer.mlp.module, module):
                return "mlp"
        return "other"

    def layer_index_of(self, name: str) -> int | None:
        """The index of the layer that holds ``name``, or None outside the stack."""
        module = self.model.get_submodule(name)
        for layer in self.layers():
            if _contains(layer.module, module):
                return layer.index
        return None

    def scale_groups(self, layer: LayerParts) -> list[ScaleGroup]:
        """Groups of linears sharing an input inside ``layer``; none for the generic model."""
        return []

    def residual_branches(self, layer: LayerParts) -> list[ResidualBranch] | None:
        """The block as pre-norm residual branches in order, or None if it is not one.

        None (the default) makes the calibration engine run whole blocks.
        """
        return None

    # -- structure: what structured pruning changes -----------------------------------
    def set_attention_geometry(self, layer: LayerParts, num_heads: int, num_kv_heads: int) -> None:
        """Tell ``layer``'s attention module its new head counts after its heads were sliced.

        The projections are already sliced; a family adapter updates whatever
        attributes its attention module reshapes by (BERT's ``all_head_size``,
        Llama's ``num_key_value_groups``). The generic model has no head geometry.
        """
        raise SlimformerError(
            f"removing attention heads is not supported for {type(self.model).__name__}",
            "use a model family slimformer has an adapter for (BERT, Llama)",
        )

    def config_sizes(self) -> LayerSizes | None:
        """The sizes every layer gets when the model class is built from its config."""
        return None

    def write_config_sizes(self, sizes: LayerSizes, num_layers: int) -> None:
        """Record ``sizes`` (uniform, or the largest of each) and the layer count in the config."""
        config = self.model.config
        config.num_attention_heads = sizes.num_heads
        config.intermediate_size = sizes.intermediate_size
        config.num_hidden_layers = num_layers

    def construction_overrides(self) -> dict:
        """Config values under which the model class builds at all, before per-layer resizing.

        Needed where a family derives a size from a changed count and refuses
        some counts (BERT: head size = hidden size / heads); empty elsewhere.
        """
        return {}

    def renumber_layers(self) -> None:
        """After layers go, every ``layer_idx`` (a layer's KV-cache slot) is its position."""
        for index, block in enumerate(self.layer_stack()):
            for module in block.modules():
                if isinstance(getattr(module, "layer_idx", None), int):
                    module.layer_idx = index

    def describe(self) -> dict:
        """A summary for reports: family, layer count, head geometry."""
        layers = self.layers()
        info: dict = {"family": self.family, "num_layers": len(layers)}
        if layers and layers[0].attention is not None:
            att = layers[0].attention
            info.update(
                num_heads=att.num_heads, num_kv_heads=att.num_kv_heads, head_dim=att.head_dim
            )
        return info


def is_embedding(module: nn.Module) -> bool:
    """Whether ``module`` is an embedding table: ``nn.Embedding`` or a compressed one.

    Compressed tables (``Int8Embedding``) keep ``num_embeddings`` and
    ``embedding_dim``, so adapters still name them after quantization.
    """
    return isinstance(module, nn.Embedding) or all(
        isinstance(getattr(module, attr, None), int) for attr in ("num_embeddings", "embedding_dim")
    )


def out_features(module: nn.Module) -> int:
    """Output width of a linear-like module (plain or compressed)."""
    width = getattr(module, "out_features", None)
    return int(width) if width is not None else int(module.weight.shape[0])


def _contains(parent: nn.Module, module: nn.Module) -> bool:
    return any(m is module for m in parent.modules())
