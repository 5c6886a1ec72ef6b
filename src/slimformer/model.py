"""The object ``slimformer.load`` returns: a model with the pieces that travel with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from slimformer.arch import Adapter, get_adapter

#: Tasks a loaded model serves, read from its Hugging Face architecture name.
TASKS = ("causal-lm", "classification", "embedding")


@dataclass
class SlimModel:
    """A model, its tokenizer and adapter, and where it came from.

    ``model`` is the plain ``torch.nn.Module`` and is called exactly like the
    Hugging Face model it came from; everything else is context that methods,
    evaluation and saving need.
    """

    model: nn.Module
    tokenizer: Any
    name: str
    source: str
    task: str
    compression: dict[str, Any] = field(default_factory=dict)
    adapter: Adapter = field(init=False)

    def __post_init__(self) -> None:
        self.adapter = get_adapter(self.model)

    def refresh_adapter(self) -> None:
        """Re-read the parts after a method replaced or removed modules."""
        self.adapter = get_adapter(self.model)

    @property
    def config(self) -> Any:
        return self.model.config

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)


def task_of(model: nn.Module) -> str:
    """The task a Hugging Face model serves, from its class name."""
    name = type(model).__name__
    if name.endswith("ForCausalLM"):
        return "causal-lm"
    if name.endswith("ForSequenceClassification"):
        return "classification"
    return "embedding"
