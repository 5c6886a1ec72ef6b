"""Adapter for BERT-family encoders (BERT, MiniLM, sentence-transformers models)."""

from __future__ import annotations

from torch import nn

from slimformer.arch.base import (
    Adapter,
    AttentionParts,
    LayerParts,
    LayerSizes,
    MLPParts,
    ScaleGroup,
    is_embedding,
)


class BertAdapter(Adapter):
    """Names the parts of ``BertModel`` and the ``BertFor*`` task models."""

    family = "bert"

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return getattr(getattr(model, "config", None), "model_type", None) == "bert"

    def _encoder_model(self) -> nn.Module:
        return getattr(self.model, "bert", self.model)

    def layer_stack(self) -> nn.ModuleList:
        return self._encoder_model().encoder.layer

    def layers(self) -> list[LayerParts]:
        parts = []
        for index, layer in enumerate(self.layer_stack()):
            attention = layer.attention
            # Read per layer from the module: structured pruning may leave layers different.
            heads = attention.self.num_attention_heads
            head_dim = attention.self.attention_head_size
            parts.append(
                LayerParts(
                    index=index,
                    module=layer,
                    attention=AttentionParts(
                        module=attention,
                        q=attention.self.query,
                        k=attention.self.key,
                        v=attention.self.value,
                        o=attention.output.dense,
                        num_heads=heads,
                        num_kv_heads=heads,
                        head_dim=head_dim,
                    ),
                    # BERT splits its MLP over two modules; the layer itself holds both.
                    mlp=MLPParts(
                        module=_BertMLPView(layer.intermediate, layer.output),
                        up=layer.intermediate.dense,
                        down=layer.output.dense,
                    ),
                    norms={
                        "attention_norm": attention.output.LayerNorm,
                        "mlp_norm": layer.output.LayerNorm,
                    },
                )
            )
        return parts

    def embeddings(self) -> dict[str, nn.Module]:
        emb = self._encoder_model().embeddings
        prefix = "bert.embeddings" if hasattr(self.model, "bert") else "embeddings"
        return {
            f"{prefix}.{name}": module
            for name, module in emb.named_children()
            if is_embedding(module)
        }

    def head(self) -> nn.Module | None:
        return getattr(self.model, "classifier", None) or getattr(self.model, "cls", None)

    def scale_groups(self, layer: LayerParts) -> list[ScaleGroup]:
        """Post-norm blocks: norm outputs are also the residual, so only v -> o folds."""
        att, mlp = layer.attention, layer.mlp
        return [
            ScaleGroup("attention_in", None, [att.q, att.k, att.v]),
            ScaleGroup("attention_out", att.v, [att.o]),
            ScaleGroup("mlp_in", None, [mlp.up]),
            ScaleGroup("mlp_out", None, [mlp.down]),
        ]

    # -- structure -----------------------------------------------------------------
    def set_attention_geometry(self, layer: LayerParts, num_heads: int, num_kv_heads: int) -> None:
        """BERT reshapes by ``attention_head_size``; the counts must match the sliced q/k/v."""
        module = layer.attention.module.self
        module.num_attention_heads = num_heads
        module.all_head_size = num_heads * module.attention_head_size

    def config_sizes(self) -> LayerSizes:
        config = self.model.config
        heads = config.num_attention_heads
        return LayerSizes(heads, heads, config.hidden_size // heads, config.intermediate_size)

    def construction_overrides(self) -> dict:
        """BERT builds heads of hidden_size / num_attention_heads: build with the original count.

        A BERT config with fewer heads builds wider heads (or refuses a count
        that does not divide the hidden size), so the class is built with the
        count that gives the saved head size and each layer is then resized.
        """
        layers = self.layers()
        if not layers:
            return {}
        return {
            "num_attention_heads": self.model.config.hidden_size // layers[0].attention.head_dim
        }

    def part_of(self, name: str) -> str:
        if ".pooler." in f".{name}.":
            return "head"
        return super().part_of(name)


class _BertMLPView(nn.Module):
    """Groups BERT's intermediate and output modules so "is in the MLP" is one test."""

    def __init__(self, intermediate: nn.Module, output: nn.Module) -> None:
        super().__init__()
        # Plain attributes, not submodules: the view must not change the model's state dict.
        object.__setattr__(self, "_members", (intermediate, output))

    def modules(self):  # type: ignore[override]
        yield self
        for member in self._members:
            yield from member.modules()
