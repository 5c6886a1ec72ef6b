"""Compression methods, one file a method, grouped by family."""

from slimformer.methods.base import (
    MethodConfig,
    StageContext,
    make_config,
    method_entry,
    register_method,
    registered_methods,
)

__all__ = [
    "MethodConfig",
    "StageContext",
    "make_config",
    "method_entry",
    "register_method",
    "registered_methods",
]
