"""Quantization: fewer bits per weight (and per activation)."""

from __future__ import annotations

from slimformer.methods.apply import apply_method
from slimformer.methods.base import MethodConfig
from slimformer.methods.quantization.awq import AWQ
from slimformer.methods.quantization.embedding import Int8Embeddings
from slimformer.methods.quantization.float_format import FloatFormat
from slimformer.methods.quantization.gptq import GPTQ
from slimformer.methods.quantization.int8_dynamic import Int8Dynamic
from slimformer.methods.quantization.mixed_precision import MixedPrecision
from slimformer.methods.quantization.rtn import RTN
from slimformer.methods.quantization.smoothquant import SmoothQuant
from slimformer.methods.quantization.w8a8 import W8A8


def quantize_(model, config: MethodConfig, **context):
    """Quantize ``model`` in place with ``config``; returns the model for chaining.

    ``calibration=`` takes token windows (``slimformer.calibration_windows``) or a
    dataset name for methods that learn from data; ``progress=False`` hides bars.
    """
    return apply_method(model, config, family="quantization", **context)


__all__ = [
    "AWQ",
    "GPTQ",
    "RTN",
    "W8A8",
    "FloatFormat",
    "Int8Dynamic",
    "Int8Embeddings",
    "MixedPrecision",
    "SmoothQuant",
    "quantize_",
]
