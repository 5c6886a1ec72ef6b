"""Float formats: the whole model's weights and compute in bfloat16 or float16.

The simplest baseline of the family: half the bytes of float32 everywhere
(embeddings included, which no integer method here touches), no calibration,
and on CPUs with bf16 matrix instructions (AMX, AVX512-BF16) faster compute
too. float16 halves the bytes as well, but most CPUs have no fast float16
matrix products: there it saves memory, not time, and the benchmark says so.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from slimformer.methods.base import MethodConfig, StageContext, register_method
from slimformer.model import SlimModel

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


class FloatFormat(MethodConfig):
    """Cast every weight and buffer to a 16-bit float format (compute follows)."""

    method = "float"
    family = "quantization"

    dtype: Literal["bfloat16", "float16"] = Field(
        default="bfloat16", description="bfloat16 (fp32's range) or float16 (finer, narrower)"
    )


@register_method(FloatFormat)
def apply_float_format(slim: SlimModel, config: FloatFormat, context: StageContext) -> None:
    dtype = _DTYPES[config.dtype]
    slim.model.to(dtype)
    # save_pretrained records the dtype, so plain transformers reloads it as saved.
    slim.model.config.dtype = dtype
