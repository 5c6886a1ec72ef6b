"""The object ``slimformer.load`` returns: a model with the pieces that travel with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from slimformer.arch import Adapter, get_adapter
from slimformer.arch.task import TASKS

__all__ = ["TASKS", "SlimModel", "task_of"]


@dataclass
class SlimModel:
    """A model, its tokenizer and adapter, and where it came from.

    ``model`` is the plain ``torch.nn.Module`` and is called exactly like the
    Hugging Face model it came from; everything else is context that methods,
    evaluation and saving need. ``task`` is the adapter's reading of the model
    unless the caller names one.
    """

    model: nn.Module
    tokenizer: Any
    name: str
    source: str
    task: str | None = None
    compression: dict[str, Any] = field(default_factory=dict)
    runtime: str = "eager"
    adapter: Adapter = field(init=False)

    def __post_init__(self) -> None:
        self.adapter = get_adapter(self.model)
        self.adapter.prepare()  # e.g. GPT-2's Conv1D layers become nn.Linear, for every method
        if self.task is None:
            self.task = self.adapter.task
        self._runner: nn.Module | None = None

    def refresh_adapter(self) -> None:
        """Re-read the parts after a method replaced or removed modules."""
        self.adapter = get_adapter(self.model)
        self._runner = None

    def prefers_compile(self) -> bool:
        """Whether the model's compressed modules are only fast in a compiled graph."""
        from slimformer.nn.registry import compressed_modules

        modules = compressed_modules(self.model).values()
        return any(getattr(m, "prefers_compile", False) for m in modules)

    def set_runtime(self, runtime: str = "auto", device: str = "cpu") -> str:
        """Choose how inference runs: ``eager``, ``compile`` or ``auto`` (by the model)."""
        from slimformer.runtime import choose_runtime

        self.runtime = choose_runtime(runtime, self.prefers_compile(), device)
        self._runner = None
        return self.runtime

    @property
    def runner(self) -> nn.Module:
        """The module inference calls: the model itself, or its compiled form."""
        if self._runner is None:
            from slimformer.runtime import make_runner

            self._runner = make_runner(self.model, self.runtime, self.adapter.sequence_inputs())
        return self._runner

    @property
    def config(self) -> Any:
        return self.model.config

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.runner(*args, **kwargs)


def task_of(model: nn.Module) -> str:
    """The task ``model`` serves, as its adapter reads it (what ``SlimModel.task`` defaults to)."""
    return get_adapter(model).task
