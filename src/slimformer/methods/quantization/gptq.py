"""GPTQ: weight-only quantization that minimises each layer's output error.

Calibration windows run through the model one block at a time (the shared
sequential engine); each block's linear layers are solved from the Hessian
of their inputs (see ``gptq_solver``), replaced by packed weight-only
layers, and the block's quantized outputs feed the next block, so later
layers correct for earlier layers' rounding.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from slimformer.calibration.run import calibrate
from slimformer.calibration.spec import CalibrationSpec
from slimformer.calibration.stats import Collect
from slimformer.methods.base import StageContext, register_method
from slimformer.methods.quantization.gptq_solver import gptq_quantize
from slimformer.methods.quantization.rtn import round_unvisited
from slimformer.methods.quantization.settings import WeightOnlySettings
from slimformer.model import SlimModel
from slimformer.nn import replace_module
from slimformer.nn.quantized_linear import WeightOnlyLinear


class GPTQ(WeightOnlySettings):
    """GPTQ: weight-only quantization solved layer by layer from calibration data."""

    method = "gptq"
    family = "quantization"

    #: 2: ``true_sequential`` (default on) was added.
    version: int = 2

    damp: PositiveFloat = Field(default=0.01, description="dampening, share of mean diag(H)")
    block_size: PositiveInt = 128
    act_order: bool = Field(
        default=True,
        description="quantize columns by decreasing H diag (static groups: no run-time cost)",
    )
    fit_grids: bool = Field(
        default=True,
        description="fit each group's grid to the input Hessian instead of its min and max",
    )
    true_sequential: bool = Field(
        default=True,
        description="solve q/k/v, then o, then gate/up, then down, each on the inputs the "
        "already-quantized layers before it produce (one block pass instead of two)",
    )
    calibration: CalibrationSpec = CalibrationSpec()

    @model_validator(mode="before")
    @classmethod
    def _version_defaults(cls, data: Any) -> Any:
        """Version 1 recipes predate ``true_sequential``: they keep solving whole blocks."""
        if isinstance(data, dict) and data.get("version", 2) == 1:
            data = {"true_sequential": False, **data}
        return data


@register_method(GPTQ)
def apply_gptq(slim: SlimModel, config: GPTQ, context: StageContext) -> None:
    scheme = config.scheme()
    # Names only: holding the modules would keep every replaced float weight alive to the end.
    targets = dict.fromkeys(config.checked_targets(slim))

    def process(block) -> None:
        for names in block.shared_input_groups(targets):
            linears = [block.linears[name] for name in names]
            solved = gptq_quantize(
                torch.cat([linear.weight for linear in linears]),
                block.stats[names[0]].hessian(),
                scheme,
                damp=config.damp,
                block_size=config.block_size,
                act_order=config.act_order,
                fit_grids=config.fit_grids,
                name=" + ".join(names),
            )
            parts = solved.weight.split([linear.out_features for linear in linears])
            for name, linear, part in zip(names, linears, parts, strict=True):
                replace_module(slim.model, name, WeightOnlyLinear.from_quantized(part, linear.bias))

    calibrate(
        slim,
        config.calibration,
        process,
        context,
        collect=Collect(xtx=True),
        true_sequential=config.true_sequential,
    )
    round_unvisited(slim, targets, scheme)
