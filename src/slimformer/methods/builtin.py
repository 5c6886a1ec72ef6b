"""Imports every built-in method so each registers itself once."""

from slimformer.methods.quantization import int8_dynamic  # noqa: F401
from slimformer.training import finetune_stage  # noqa: F401
