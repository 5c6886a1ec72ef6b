"""GPTQ: weight-only quantization that minimises each layer's output error.

Calibration windows run through the model one block at a time (the shared
sequential engine); each block's linear layers are solved from the Hessian
of their inputs (see ``gptq_solver``), replaced by packed weight-only
layers, and the block's quantized outputs feed the next block, so later
layers correct for earlier layers' rounding.
"""

from __future__ import annotations

from pydantic import Field, PositiveFloat, PositiveInt

from slimformer.methods.base import StageContext, register_method
from slimformer.methods.calibration_spec import CalibrationSpec, calibration_tokens
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

    damp: PositiveFloat = Field(default=0.01, description="dampening, share of mean diag(H)")
    block_size: PositiveInt = 128
    act_order: bool = Field(default=False, description="quantize columns by decreasing H diag")
    calibration: CalibrationSpec = CalibrationSpec()


@register_method(GPTQ)
def apply_gptq(slim: SlimModel, config: GPTQ, context: StageContext) -> None:
    from slimformer.calibrate import Collect, run_sequential

    scheme = config.scheme()
    targets = config.select(slim)
    for name, linear in targets.items():  # every setting is checked before any work
        scheme.validate(linear.in_features, layer=name)
    windows = calibration_tokens(slim, config.calibration, context.calibration)

    def process(block) -> None:
        for name, linear in block.linears.items():
            if name not in targets:
                continue
            solved = gptq_quantize(
                linear.weight,
                block.stats[name].hessian(),
                scheme,
                damp=config.damp,
                block_size=config.block_size,
                act_order=config.act_order,
                name=name,
            )
            bias = None if linear.bias is None else linear.bias.detach()
            replace_module(slim.model, name, WeightOnlyLinear.from_quantized(solved.weight, bias))

    run_sequential(
        slim,
        windows,
        process,
        collect=Collect(xtx=True),
        device=context.device,
        compute_dtype=config.calibration.torch_dtype(),
        progress=context.progress,
    )
    round_unvisited(slim, targets, scheme)
