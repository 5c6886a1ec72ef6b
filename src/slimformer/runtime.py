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
for encoders or causal decoders. Which inputs are sequence-shaped is the
model adapter's word (``Adapter.sequence_inputs``); calls with any other
tensor (labels, caches) run eagerly.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from slimformer.errors import SlimformerError

RUNTIMES = ("eager", "compile")
#: The sequence-shaped inputs of a text model: what is padded when the caller names none.
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: The input whose zeros mask the padding out; made (all ones) when the call has none.
MASK = "attention_mask"


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


def make_runner(
    model: nn.Module, runtime: str, sequence_inputs: Sequence[str] = TEXT_INPUTS
) -> nn.Module:
    """The module to call for inference under ``runtime``.

    ``sequence_inputs`` names the model's ``[batch, sequence, ...]`` inputs,
    main input first (its adapter's ``sequence_inputs()``).
    """
    if runtime == "compile":
        return BucketedCompiled(model, sequence_inputs=sequence_inputs)
    return model


class BucketedCompiled(nn.Module):
    """Calls a compiled copy of ``model`` with inputs padded to shape buckets.

    Attribute access falls through to the wrapped model, so code that reads
    ``runner.config`` or calls ``runner.eval()`` sees the model itself.
    """

    def __init__(
        self, model: nn.Module, seq_multiple: int = 32, sequence_inputs: Sequence[str] = TEXT_INPUTS
    ) -> None:
        super().__init__()
        self.model = model
        self.seq_multiple = seq_multiple
        self.sequence_inputs = tuple(sequence_inputs)
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
        names = self.sequence_inputs
        if args or self.training or not _paddable(kwargs, names):
            return self.model(*args, **kwargs)
        batch, seq = kwargs[names[0]].shape[:2]
        padded_batch, padded_seq = _bucket_batch(batch), _round_up(seq, self.seq_multiple)
        inputs = _pad_inputs(kwargs, padded_batch, padded_seq, names)
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


def _paddable(kwargs: dict[str, Any], names: Sequence[str] = TEXT_INPUTS) -> bool:
    """Every input given is sequence-shaped, the main one (``names[0]``) among them."""
    given = {k for k, v in kwargs.items() if v is not None}
    if not names or names[0] not in given or not given <= set(names):
        return False
    lead = kwargs[names[0]].shape[:2]
    return (
        kwargs[names[0]].dim() >= 2
        and all(torch.is_tensor(kwargs[k]) for k in given)
        and all(kwargs[k].dim() >= 2 and kwargs[k].shape[:2] == lead for k in given)
    )


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _bucket_batch(batch: int) -> int:
    if batch >= 32:
        return _round_up(batch, 32)
    size = 1
    while size < batch:
        size *= 2
    return size


def _pad_inputs(
    kwargs: dict[str, Any], batch: int, seq: int, names: Sequence[str] = TEXT_INPUTS
) -> dict[str, torch.Tensor]:
    """Every named input zero-padded to ``[batch, seq, ...]``, with a mask made if it is missing.

    The padding must be masked out, so a model whose inputs include
    ``attention_mask`` always gets one (all ones over the real positions).
    """
    lead = kwargs[names[0]]
    padded = {name: kwargs[name] for name in names if kwargs.get(name) is not None}
    if MASK in names and MASK not in padded:
        ones = torch.ones_like(lead) if lead.dim() == 2 else None
        padded[MASK] = ones if ones is not None else lead.new_ones(lead.shape[:2], dtype=torch.long)
    return {name: _pad_rows_and_positions(tensor, batch, seq) for name, tensor in padded.items()}


def _pad_rows_and_positions(tensor: torch.Tensor, batch: int, seq: int) -> torch.Tensor:
    """``tensor`` ([rows, cols, ...]) zero-padded to ``[batch, seq, ...]``."""
    rows, cols = tensor.shape[:2]
    if (rows, cols) == (batch, seq):
        return tensor
    out = tensor.new_zeros((batch, seq, *tensor.shape[2:]))
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


def check_device(device: str) -> None:
    """Refuse a device this machine does not have, before any model is loaded or changed.

    Without this, ``--device cuda`` on a CPU machine ended in a traceback from
    deep inside PyTorch after the model had been loaded and assessed.
    """
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise SlimformerError(
            f"unknown device {device!r}", "use cpu, cuda, cuda:0, mps, ..."
        ) from None
    present = {
        "cpu": lambda: True,
        "cuda": torch.cuda.is_available,
        "mps": lambda: (
            getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        ),
    }.get(kind, lambda: True)
    if not present():
        raise SlimformerError(
            f"device {device!r} is not available on this machine", "use --device cpu"
        )
