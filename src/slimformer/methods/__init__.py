"""Compression methods, one family a folder, one file a method.

``methods.base`` holds what every method shares (the config base, the stage
context, registration); ``methods.catalog`` imports every built-in method and
looks methods up by name.
"""

from slimformer.methods.base import MethodConfig, StageContext, register_method

__all__ = ["MethodConfig", "StageContext", "register_method"]
