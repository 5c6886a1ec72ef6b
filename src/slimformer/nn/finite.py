"""Finite-number guards: NaN and inf found where they enter, named, never compressed.

One NaN weight makes a model score like chance before and after compression,
and an inf weight becomes an inf quantization scale that is saved and then
reported as an improvement. So the pipeline checks the input model before any
work, the calibration statistics as they are gathered, and every tensor
before it is written; each failure names the tensors and how many values in
each are bad. The check is one ``isfinite(...).all()`` per floating tensor
and a single device sync; integer codes and masks are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import nn

from slimformer.errors import SlimformerError

#: Tensors named in one error message; the rest are counted.
NAMED = 3

#: The fix for non-finite values in a model the user passed in.
BROKEN_INPUT_FIX = (
    "the input model is broken: re-export it or check the checkpoint it was loaded from"
)


def _checkable(tensor: torch.Tensor | None) -> bool:
    """Floating, dense and materialised: the tensors a NaN or inf can live in."""
    return (
        tensor is not None
        and (tensor.is_floating_point() or tensor.is_complex())
        and tensor.layout == torch.strided
        and not tensor.is_meta
    )


def nonfinite_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> dict[str, int]:
    """``{name: count of NaN/inf values}`` for every floating tensor that holds any."""
    named = [(name, t) for name, t in named if _checkable(t)]
    if not named:
        return {}
    with torch.no_grad():
        flags = [torch.isfinite(t).all() for _, t in named]
        ok = _gather(flags)
        bad = [i for i, fine in enumerate(ok) if not fine]
        return {named[i][0]: int((~torch.isfinite(named[i][1])).sum()) for i in bad}


def _gather(flags: list[torch.Tensor]) -> list[bool]:
    """The flags as Python bools, one device sync per device rather than one per tensor."""
    by_device: dict[torch.device, list[int]] = {}
    for index, flag in enumerate(flags):
        by_device.setdefault(flag.device, []).append(index)
    values = [True] * len(flags)
    for indices in by_device.values():
        stacked = torch.stack([flags[i] for i in indices]).tolist()
        for index, value in zip(indices, stacked, strict=True):
            values[index] = value
    return values


def model_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Parameters and persistent buffers, each shared tensor once (what a checkpoint holds)."""
    seen: set[int] = set()
    for prefix, module in model.named_modules(remove_duplicate=False):
        skip = getattr(module, "_non_persistent_buffers_set", set())
        tensors = [*module._parameters.items()]
        tensors += [(n, b) for n, b in module._buffers.items() if n not in skip]
        for name, tensor in tensors:
            if tensor is None or id(tensor) in seen:
                continue
            seen.add(id(tensor))
            yield (f"{prefix}.{name}" if prefix else name), tensor


def describe(bad: dict[str, int]) -> str:
    """``a.weight (1 NaN/inf), b.bias (3 NaN/inf) and 2 more tensors``."""
    named = [f"{name} ({count} NaN/inf)" for name, count in list(bad.items())[:NAMED]]
    rest = len(bad) - len(named)
    more = f" and {rest} more tensor{'s' if rest > 1 else ''}" if rest else ""
    return ", ".join(named) + more


def check_model_finite(model: nn.Module, fix: str = BROKEN_INPUT_FIX) -> None:
    """Refuse a model whose weights or buffers hold NaN or inf, naming them."""
    bad = nonfinite_tensors(model_tensors(model))
    if bad:
        raise SlimformerError(f"the model has non-finite weights: {describe(bad)}", fix)


def check_tensors_finite(named: Iterable[tuple[str, torch.Tensor]], problem: str, fix: str) -> None:
    """Raise ``problem: <named tensors>; fix`` if any tensor holds NaN or inf."""
    bad = nonfinite_tensors(named)
    if bad:
        raise SlimformerError(f"{problem}: {describe(bad)}", fix)
