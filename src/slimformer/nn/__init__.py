"""Compressed modules; each owns its save format through the kind registry."""

from slimformer.nn.input_scaled import InputScaled
from slimformer.nn.int8_embedding import Int8Embedding
from slimformer.nn.int8_linear import Int8DynamicLinear
from slimformer.nn.int8_static import Int8StaticLinear
from slimformer.nn.quantized_linear import WeightOnlyLinear
from slimformer.nn.registry import (
    compressed_modules,
    module_class,
    register_module,
    replace_module,
)
from slimformer.nn.sparse_linear import SparseLinear

__all__ = [
    "InputScaled",
    "Int8DynamicLinear",
    "Int8Embedding",
    "Int8StaticLinear",
    "SparseLinear",
    "WeightOnlyLinear",
    "compressed_modules",
    "module_class",
    "register_module",
    "replace_module",
]
