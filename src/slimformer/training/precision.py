"""Mixed precision: bf16 autocast where the device runs it well, fp32 elsewhere.

``auto`` turns bf16 on for CUDA devices that support it and leaves CPUs in
fp32: CPU bf16 speed depends on the chip, and fp32 keeps CPU runs bit-exact
and deterministic, which resume and caching rely on. ``bf16`` forces it.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

from slimformer.errors import SlimformerError

Precision = Literal["auto", "fp32", "bf16"]


def uses_bf16(precision: Precision, device: str) -> bool:
    """Whether training on ``device`` runs under bf16 autocast."""
    kind = torch.device(device).type
    if precision == "fp32":
        return False
    if precision == "bf16":
        if kind == "cuda" and not torch.cuda.is_bf16_supported():
            raise SlimformerError(
                f"device {device} does not support bf16", "use precision: fp32 or auto"
            )
        return True
    return kind == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def autocast(precision: Precision, device: str) -> contextlib.AbstractContextManager:
    """The autocast context for one forward pass (a no-op in fp32)."""
    if not uses_bf16(precision, device):
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
