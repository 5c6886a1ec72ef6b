"""Adapter for GPT-2 (``GPT2Model``, ``GPT2LMHeadModel`` and the ``GPT2For*`` task models).

GPT-2 computes its projections with transformers' ``Conv1D``: a linear layer
whose weight is stored transposed (``[in, out]``, ``y = x @ W + b``). Every
method acts on ``nn.Linear``, so when slimformer takes hold of a GPT-2 model
(:meth:`GPT2Adapter.prepare`) each ``Conv1D`` becomes the ``nn.Linear`` that
computes the same function. Saving turns the float ones back
(:meth:`GPT2Adapter.state_dict_to_save`): a saved folder holds GPT-2's own
layout, so plain ``transformers`` loads an uncompressed one, and slimformer's
loader, which builds GPT-2 with its ``Conv1D`` layers before reading the
tensors, needs no GPT-2 case. Storing the linear layout instead would load
silently wrong in plain transformers: ``attn.c_proj`` is square, so its
transposed weight fits without an error.
"""

from __future__ import annotations

import torch
from torch import nn

from slimformer.arch.base import (
    Adapter,
    AttentionParts,
    LayerParts,
    LayerSizes,
    MLPParts,
    OutputRows,
    ScaleGroup,
)

#: Names of the modules GPT-2 builds as ``Conv1D`` (``q_attn`` only with cross-attention).
CONV1D_NAMES = frozenset({"c_attn", "q_attn", "c_proj", "c_fc"})


class GPT2Adapter(Adapter):
    """Names the parts of GPT-2: fused q/k/v, LayerNorms with bias, head tied to ``wte``."""

    family = "gpt2"

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return getattr(getattr(model, "config", None), "model_type", None) == "gpt2"

    def _base(self) -> nn.Module:
        return getattr(self.model, "transformer", self.model)

    # -- taking hold, letting go -----------------------------------------------------------
    def prepare(self) -> None:
        """Replace every ``Conv1D`` with the equivalent ``nn.Linear`` (idempotent)."""
        from transformers.pytorch_utils import Conv1D  # only once a GPT-2 model is held

        for name, module in list(self.model.named_modules()):
            if isinstance(module, Conv1D):
                _replace(self.model, name, linear_from_conv1d(module))

    def state_dict_to_save(self) -> dict[str, torch.Tensor]:
        """The state dict with every float linear in a ``Conv1D`` slot back in ``[in, out]``.

        Only plain ``nn.Linear`` modules sitting where GPT-2 has a ``Conv1D``
        are turned: compressed modules own their layout, and a float linear
        inside a wrapper (``...c_proj.inner``) is rebuilt as a linear on load.
        """
        state = self.model.state_dict()
        for name, module in self.model.named_modules():
            if type(module) is nn.Linear and name.rpartition(".")[2] in CONV1D_NAMES:
                state[f"{name}.weight"] = module.weight.detach().t().contiguous()
        return state

    # -- structure ---------------------------------------------------------------------------
    def layer_stack(self) -> nn.ModuleList:
        return self._base().h

    def layers(self) -> list[LayerParts]:
        return [self._layer(index, block) for index, block in enumerate(self.layer_stack())]

    def _layer(self, index: int, block: nn.Module) -> LayerParts:
        """One block; ``c_attn`` is q, k and v at once (see ``AttentionParts``)."""
        config = self.model.config
        attn, mlp = block.attn, block.mlp
        return LayerParts(
            index=index,
            module=block,
            attention=AttentionParts(
                module=attn,
                q=attn.c_attn,
                k=attn.c_attn,
                v=attn.c_attn,
                o=attn.c_proj,
                num_heads=config.n_head,
                num_kv_heads=config.n_head,
                head_dim=config.n_embd // config.n_head,
            ),
            mlp=MLPParts(module=mlp, up=mlp.c_fc, down=mlp.c_proj),
            norms={"attention_norm": block.ln_1, "mlp_norm": block.ln_2},
        )

    def write_config_sizes(self, sizes: LayerSizes, num_layers: int) -> None:
        """GPT-2 names its MLP width ``n_inner`` (None: four times the hidden size).

        Only a changed width is written, so an untouched config keeps its None.
        Heads are not written: the fused q/k/v projection keeps every head.
        """
        config = self.model.config
        if sizes.intermediate_size != (config.n_inner or 4 * config.n_embd):
            config.n_inner = sizes.intermediate_size
        config.n_layer = num_layers

    def embeddings(self) -> dict[str, nn.Module]:
        prefix = "transformer." if hasattr(self.model, "transformer") else ""
        base = self._base()
        return {f"{prefix}wte": base.wte, f"{prefix}wpe": base.wpe}

    def head(self) -> nn.Module | None:
        return getattr(self.model, "lm_head", None) or getattr(self.model, "score", None)

    def scale_groups(self, layer: LayerParts) -> list[ScaleGroup]:
        """Pre-norm blocks: both LayerNorms fold; c_proj's scale folds into the v rows of c_attn.

        ``c_attn`` is listed once (as q, k and v it would be scaled three
        times). Channel j of the attention output is a softmax-weighted sum of
        channel j of v, so ``attn.c_proj``'s input scale folds exactly into
        the v rows of ``c_attn``. The MLP has a GELU between ``c_fc`` and
        ``c_proj``, which does not commute with a scale, so that one stays
        explicit.
        """
        att, mlp = layer.attention, layer.mlp
        width = att.num_heads * att.head_dim
        return [
            ScaleGroup("attention_in", layer.norms["attention_norm"], [att.q]),
            ScaleGroup("attention_out", OutputRows(att.v, 2 * width, 3 * width), [att.o]),
            ScaleGroup("mlp_in", layer.norms["mlp_norm"], [mlp.up]),
            ScaleGroup("mlp_out", None, [mlp.down]),
        ]


def linear_from_conv1d(conv: nn.Module) -> nn.Linear:
    """The ``nn.Linear`` computing what ``conv`` does: its weight transposed, its bias shared."""
    weight = conv.weight.detach()
    in_features, out_features = weight.shape
    linear = nn.Linear(in_features, out_features, bias=False, device="meta")
    linear.weight = nn.Parameter(weight.t().contiguous(), requires_grad=conv.weight.requires_grad)
    linear.bias = conv.bias
    return linear.train(conv.training)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    """``slimformer.nn.replace_module``; importing slimformer.nn here would be circular."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
