"""Quantization: fewer bits per weight (and per activation)."""

from __future__ import annotations

from slimformer.methods.apply import apply_method
from slimformer.methods.base import MethodConfig
from slimformer.methods.quantization.awq import AWQ
from slimformer.methods.quantization.int8_dynamic import Int8Dynamic
from slimformer.methods.quantization.rtn import RTN
from slimformer.methods.quantization.smoothquant import SmoothQuant
from slimformer.methods.quantization.w8a8 import W8A8


def quantize_(model, config: MethodConfig, **context):
    """Quantize ``model`` in place with ``config``; returns the model for chaining."""
    return apply_method(model, config, family="quantization", **context)


__all__ = ["AWQ", "RTN", "W8A8", "Int8Dynamic", "SmoothQuant", "quantize_"]
