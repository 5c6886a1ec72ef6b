"""Imports every built-in method so each registers itself once."""

from slimformer.distillation import stage as distill_stage  # noqa: F401
from slimformer.methods.movement import stage as movement_stage  # noqa: F401
from slimformer.methods.pruning import (
    magnitude,  # noqa: F401
    sparsegpt,  # noqa: F401
    wanda,  # noqa: F401
)
from slimformer.methods.quantization import (
    awq,  # noqa: F401
    embedding,  # noqa: F401
    float_format,  # noqa: F401
    gptq,  # noqa: F401
    int8_dynamic,  # noqa: F401
    mixed_precision,  # noqa: F401
    rtn,  # noqa: F401
    smoothquant,  # noqa: F401 - imports (so registers) w8a8 too
)
from slimformer.methods.structured import (
    drop_layers,  # noqa: F401
    prune_heads,  # noqa: F401
    prune_neurons,  # noqa: F401
)
from slimformer.training import finetune_stage  # noqa: F401
