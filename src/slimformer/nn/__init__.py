"""Compressed modules; each owns its save format through the kind registry."""

from slimformer.nn.int8_linear import Int8DynamicLinear
from slimformer.nn.quantized_linear import WeightOnlyLinear
from slimformer.nn.registry import (
    compressed_modules,
    module_class,
    register_module,
    replace_module,
)

__all__ = [
    "Int8DynamicLinear",
    "WeightOnlyLinear",
    "compressed_modules",
    "module_class",
    "register_module",
    "replace_module",
]
