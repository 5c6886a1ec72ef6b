"""Adapter for Llama-family decoders (Llama, SmolLM2, Mistral-style GQA models)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from slimformer.arch.base import (
    Adapter,
    AttentionParts,
    LayerParts,
    LayerSizes,
    MLPParts,
    ResidualBranch,
    ScaleGroup,
    out_features,
)

_FAMILY_TYPES = {"llama", "mistral", "qwen2", "qwen3"}


class LlamaAdapter(Adapter):
    """Names the parts of ``LlamaModel`` / ``LlamaForCausalLM`` and look-alikes."""

    family = "llama"

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return getattr(getattr(model, "config", None), "model_type", None) in _FAMILY_TYPES

    def _base(self) -> nn.Module:
        return getattr(self.model, "model", self.model)

    def layer_stack(self) -> nn.ModuleList:
        return self._base().layers

    def layers(self) -> list[LayerParts]:
        parts = []
        for index, layer in enumerate(self.layer_stack()):
            attn, mlp = layer.self_attn, layer.mlp
            # Read per layer from the projections: structured pruning may leave layers different.
            head_dim = attn.head_dim
            heads = out_features(attn.q_proj) // head_dim
            kv_heads = out_features(attn.k_proj) // head_dim
            parts.append(
                LayerParts(
                    index=index,
                    module=layer,
                    attention=AttentionParts(
                        module=attn,
                        q=attn.q_proj,
                        k=attn.k_proj,
                        v=attn.v_proj,
                        o=attn.o_proj,
                        num_heads=heads,
                        num_kv_heads=kv_heads,
                        head_dim=head_dim,
                    ),
                    mlp=MLPParts(
                        module=mlp, up=mlp.up_proj, down=mlp.down_proj, gate=mlp.gate_proj
                    ),
                    norms={
                        "attention_norm": layer.input_layernorm,
                        "mlp_norm": layer.post_attention_layernorm,
                    },
                )
            )
        return parts

    def embeddings(self) -> dict[str, nn.Module]:
        prefix = "model." if hasattr(self.model, "model") else ""
        return {f"{prefix}embed_tokens": self._base().embed_tokens}

    def head(self) -> nn.Module | None:
        return getattr(self.model, "lm_head", None) or getattr(self.model, "score", None)

    # -- structure -----------------------------------------------------------------
    def set_attention_geometry(self, layer: LayerParts, num_heads: int, num_kv_heads: int) -> None:
        """Llama repeats each key/value head ``num_key_value_groups`` times to meet the queries."""
        layer.attention.module.num_key_value_groups = num_heads // num_kv_heads

    def config_sizes(self) -> LayerSizes:
        config = self.model.config
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return LayerSizes(heads, kv_heads, head_dim, config.intermediate_size)

    def write_config_sizes(self, sizes: LayerSizes, num_layers: int) -> None:
        """Head size is written out too: Llama would otherwise derive it from the new head count."""
        super().write_config_sizes(sizes, num_layers)
        self.model.config.num_key_value_heads = sizes.num_kv_heads
        self.model.config.head_dim = sizes.head_dim

    def scale_groups(self, layer: LayerParts) -> list[ScaleGroup]:
        """Pre-norm blocks: both norms fold; v folds into o unless heads are grouped."""
        att, mlp = layer.attention, layer.mlp
        v_folds = att.num_kv_heads == att.num_heads
        return [
            ScaleGroup("attention_in", layer.norms["attention_norm"], [att.q, att.k, att.v]),
            ScaleGroup("attention_out", att.v if v_folds else None, [att.o]),
            ScaleGroup("mlp_in", layer.norms["mlp_norm"], [mlp.gate, mlp.up]),
            ScaleGroup("mlp_out", mlp.up, [mlp.down]),
        ]

    def residual_branches(self, layer: LayerParts) -> list[ResidualBranch]:
        """Attention then MLP, each added to the residual stream after its own norm."""
        att, mlp = layer.attention, layer.mlp
        return [
            ResidualBranch(
                norm=layer.norms["attention_norm"],
                module=att.module,
                inputs=[att.q, att.k, att.v],
                output=att.o,
                call=_call_attention,
            ),
            ResidualBranch(
                norm=layer.norms["mlp_norm"],
                module=mlp.module,
                inputs=[mlp.gate, mlp.up],
                output=mlp.down,
                call=_call_mlp,
            ),
        ]


def _call_attention(module: nn.Module, hidden: Tensor, kwargs: dict[str, Any]) -> Any:
    return module(hidden_states=hidden, **kwargs)


def _call_mlp(module: nn.Module, hidden: Tensor, kwargs: dict[str, Any]) -> Any:
    return module(hidden)
