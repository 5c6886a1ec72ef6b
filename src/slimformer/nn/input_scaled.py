"""A linear-like module whose input is multiplied by a per-channel scale first.

Activation-aware methods move a scale from a layer's input into its weights.
Where the producer of that input can absorb the inverse scale (a pre-norm, a
linear), it does; where it cannot (a post-norm whose output is also the
residual, an activation function), this wrapper applies it explicitly, at the
cost of one multiply, and saves it with the model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from slimformer.nn.registry import module_class, register_module


@register_module
class InputScaled(nn.Module):
    """``inner(x * scale)``, where ``inner`` is any linear-like module."""

    kind = "input_scaled"

    def __init__(self, inner: nn.Module, scale: torch.Tensor) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("scale", scale.detach().float().clone())

    @property
    def in_features(self) -> int:
        return self.scale.numel()

    @property
    def out_features(self) -> int:
        return self.inner.out_features

    @property
    def weight(self) -> torch.Tensor:
        """The inner weight, so code that reads ``.weight`` keeps working before quantization."""
        return self.inner.weight

    def spec(self) -> dict[str, Any]:
        inner_kind = getattr(self.inner, "kind", "linear")
        inner_spec = (
            self.inner.spec()
            if inner_kind != "linear"
            else {
                "in_features": self.inner.in_features,
                "out_features": self.inner.out_features,
                "bias": self.inner.bias is not None,
            }
        )
        return {"features": self.scale.numel(), "inner": {"kind": inner_kind, "spec": inner_spec}}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> InputScaled:
        inner = spec["inner"]
        if inner["kind"] == "linear":
            module = nn.Linear(**inner["spec"])
        else:
            module = module_class(inner["kind"]).from_spec(inner["spec"])
        return cls(module, torch.ones(spec["features"]))

    def logical_weights(self) -> list[torch.Tensor]:
        inner = getattr(self.inner, "logical_weights", None)
        tensors = inner() if callable(inner) else list(self.inner.parameters())
        return [*tensors, self.scale]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x * self.scale.to(x.dtype))


def innermost(module: nn.Module) -> nn.Module:
    """The module a chain of ``InputScaled`` wrappers holds (itself if unwrapped)."""
    while isinstance(module, InputScaled):
        module = module.inner
    return module
