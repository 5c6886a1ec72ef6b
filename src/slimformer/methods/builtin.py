"""Imports every built-in method so each registers itself once."""

from slimformer.methods.quantization import (
    gptq,  # noqa: F401
    int8_dynamic,  # noqa: F401
    rtn,  # noqa: F401
)
from slimformer.training import finetune_stage  # noqa: F401
