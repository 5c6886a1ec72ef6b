"""Run times: eager PyTorch, or a compiled graph with inputs padded to shape buckets.

int8 matrix products are several times faster than fp32 on this CPU, but in
eager PyTorch the per-token quantization around them costs several passes
over memory and an operator dispatch each, which eats most of the gain. A
compiled graph (torch.compile / Inductor) fuses that work into the
neighbouring kernels and calls the int8 product directly; that is the
run time at which slimformer's int8 speed-ups are measured and quoted.

Compiled graphs are specialised to input shapes. To keep the number of
compilations small, inputs are padded on the right to a few buckets
(sequence to a multiple of 32, batch to a power of two up to 32, then a
multiple of 32) with the padding masked out, and outputs are cut back.
Right padding with a zero attention mask changes no real position's output
for encoders or causal decoders. Calls the bucketing cannot pad safely
(labels, caches, embeddings given directly) run eagerly.
"""

from __future__ import annotations

import shutil
import warnings
from typing import Any

import torch
from torch import nn

from slimformer.errors import SlimformerError

RUNTIMES = ("eager", "compile")
_PADDABLE = {"input_ids", "attention_mask", "token_type_ids"}


def compiler_available() -> bool:
    """Inductor on CPU needs a C++ compiler at run time."""
    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))


def choose_runtime(requested: str, prefers_compile: bool, device: str = "cpu") -> str:
    """Resolve ``auto`` to a run time; explain when compile cannot be honoured."""
    if requested not in (*RUNTIMES, "auto"):
        raise SlimformerError(
            f"unknown runtime {requested!r}", f"use one of: auto, {', '.join(RUNTIMES)}"
        )
    want = ("compile" if prefers_compile else "eager") if requested == "auto" else requested
    if want == "compile" and str(device).startswith("cpu") and not compiler_available():
        warnings.warn(
            "no C++ compiler found, so the model runs eagerly (slower); install g++ for speed",
            stacklevel=2,
        )
        return "eager"
    return want


def make_runner(model: nn.Module, runtime: str) -> nn.Module:
    """The module to call for inference under ``runtime``."""
    return BucketedCompiled(model) if runtime == "compile" else model


class BucketedCompiled(nn.Module):
    """Calls a compiled copy of ``model`` with inputs padded to shape buckets.

    Attribute access falls through to the wrapped model, so code that reads
    ``runner.config`` or calls ``runner.eval()`` sees the model itself.
    """

    def __init__(self, model: nn.Module, seq_multiple: int = 32) -> None:
        super().__init__()
        self.model = model
        self.seq_multiple = seq_multiple
        self._compiled = None
        self.train(model.training)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)

    def _graph(self):
        if self._compiled is None:
            import torch._dynamo

            torch._dynamo.config.cache_size_limit = max(64, torch._dynamo.config.cache_size_limit)
            self._compiled = torch.compile(self.model, dynamic=False, options=_options(self.model))
        return self._compiled

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if args or self.training or not _paddable(kwargs):
            return self.model(*args, **kwargs)
        input_ids = kwargs["input_ids"]
        batch, seq = input_ids.shape
        padded_batch, padded_seq = _bucket_batch(batch), _round_up(seq, self.seq_multiple)
        inputs = _pad_inputs(kwargs, padded_batch, padded_seq)
        output = self._graph()(**inputs)
        return _cut(output, batch, seq, padded_batch, padded_seq)


def _options(model: nn.Module) -> dict[str, Any]:
    """Inductor options: on CPU a C++ wrapper, which removes per-kernel Python overhead.

    At batch 1 the model's kernels are small and the Python wrapper that
    launches them costs as much as the arithmetic; the C++ wrapper removes
    that cost (benchmarks/int8_dynamic.py measures the result at batch 1).
    """
    tensors = [*model.parameters(recurse=True), *model.buffers(recurse=True)][:1]
    on_cpu = not tensors or tensors[0].device.type == "cpu"
    return {"cpp_wrapper": True} if on_cpu else {}


def _paddable(kwargs: dict[str, Any]) -> bool:
    tensors = {k for k, v in kwargs.items() if v is not None}
    return "input_ids" in tensors and tensors <= _PADDABLE and kwargs["input_ids"].dim() == 2


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _bucket_batch(batch: int) -> int:
    if batch >= 32:
        return _round_up(batch, 32)
    size = 1
    while size < batch:
        size *= 2
    return size


def _pad_inputs(kwargs: dict[str, Any], batch: int, seq: int) -> dict[str, torch.Tensor]:
    ids = kwargs["input_ids"]
    mask = kwargs.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(ids)
    padded = {"input_ids": ids, "attention_mask": mask}
    if kwargs.get("token_type_ids") is not None:
        padded["token_type_ids"] = kwargs["token_type_ids"]
    return {name: _pad2d(tensor, batch, seq) for name, tensor in padded.items()}


def _pad2d(tensor: torch.Tensor, batch: int, seq: int) -> torch.Tensor:
    rows, cols = tensor.shape
    if (rows, cols) == (batch, seq):
        return tensor
    out = tensor.new_zeros((batch, seq))
    out[:rows, :cols] = tensor
    return out


def _cut(output: Any, batch: int, seq: int, padded_batch: int, padded_seq: int) -> Any:
    """Remove padding: rows beyond ``batch``, and positions beyond ``seq`` of per-token outputs."""

    def cut(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == padded_batch:
            value = value[:batch]
            if value.dim() >= 3 and value.shape[1] == padded_seq:
                value = value[:, :seq]
            return value
        if isinstance(value, tuple):
            return tuple(cut(v) for v in value)
        return value

    if hasattr(output, "keys"):
        for key in list(output.keys()):
            output[key] = cut(output[key])
        return output
    return cut(output)
