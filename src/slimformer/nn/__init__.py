"""Compressed modules; each owns its save format through the kind registry."""

from slimformer.nn.input_scaled import InputScaled
from slimformer.nn.int8_linear import Int8DynamicLinear
from slimformer.nn.quantized_linear import WeightOnlyLinear
from slimformer.nn.registry import (
    compressed_modules,
    module_class,
    register_module,
    replace_module,
)

__all__ = [
    "InputScaled",
    "Int8DynamicLinear",
    "WeightOnlyLinear",
    "compressed_modules",
    "module_class",
    "register_module",
    "replace_module",
]
