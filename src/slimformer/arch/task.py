"""Which task a model serves, read from what it computes rather than what its class is called.

Evaluation, distillation and reports branch on the task; a class-name suffix
(``...ForCausalLM``) names it only for Hugging Face's own classes. The
model's structure says it for any class: a model that generates text is a
causal LM, one whose head has one output per label classifies, and anything
else turns text into hidden states (embeddings).
"""

from __future__ import annotations

from torch import nn

#: Tasks a model serves.
TASKS = ("causal-lm", "classification", "embedding")

#: Attribute names Hugging Face models give their sequence-classification head.
_CLASSIFIER_NAMES = ("classifier", "score")


def model_task(model: nn.Module, head: nn.Module | None = None) -> str:
    """``causal-lm``, ``classification`` or ``embedding``; ``head`` is the adapter's task head."""
    if _classifies(model, head):
        return "classification"
    if _generates(model):
        return "causal-lm"
    if getattr(model, "config", None) is None:
        return task_from_class_name(model)  # a plain module: its name is all there is
    return "embedding"


def task_from_class_name(model: nn.Module) -> str:
    """The task a Hugging Face class name states; the fallback for models without a config."""
    name = type(model).__name__
    if name.endswith("ForCausalLM"):
        return "causal-lm"
    if name.endswith("ForSequenceClassification"):
        return "classification"
    return "embedding"


def _generates(model: nn.Module) -> bool:
    """A decoder-only model that can generate: Hugging Face's own test, not a name."""
    can_generate = getattr(model, "can_generate", None)
    config = getattr(model, "config", None)
    if not callable(can_generate) or getattr(config, "is_encoder_decoder", False):
        return False
    return bool(can_generate())


def _classifies(model: nn.Module, head: nn.Module | None) -> bool:
    """The head is a layer with one output per label that is not the output embedding."""
    labels = getattr(getattr(model, "config", None), "num_labels", None)
    if not isinstance(labels, int):
        return False
    heads = [head] + [getattr(model, name, None) for name in _CLASSIFIER_NAMES]
    get_output = getattr(model, "get_output_embeddings", None)
    output_embedding = get_output() if callable(get_output) else None
    return any(
        isinstance(h, nn.Module) and h is not output_embedding and _width(h) == labels
        for h in heads
    )


def _width(module: nn.Module) -> int | None:
    """Output width of a linear-like module (plain or compressed), None for anything else."""
    width = getattr(module, "out_features", None)
    if isinstance(width, int):
        return width
    weight = getattr(module, "weight", None)
    return int(weight.shape[0]) if getattr(weight, "dim", lambda: 0)() == 2 else None
