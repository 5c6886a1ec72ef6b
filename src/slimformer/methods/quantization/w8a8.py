"""Naive W8A8: int8 weights per channel and int8 activations, without smoothing.

The baseline that SmoothQuant improves on. ``activations="per_tensor"``
quantizes every layer's input on one fixed step, calibrated as the largest
|x| the layer saw on calibration text (times ``clip``); that is the cheapest
int8 scheme at run time, and the one that suffers most from activation
outlier channels. ``activations="per_token"`` computes a step per token at
run time instead (``Int8DynamicLinear``) and needs no calibration.

Calibration walks the blocks with the sequential engine, so each block's
input ranges are measured on the outputs of the already quantized blocks
before it, as they will be at inference. Selected linears outside the stack
of blocks (a task head, when ``parts`` asks for it) are calibrated afterwards
with one pass of the quantized model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from slimformer.calibration.run import calibrate
from slimformer.calibration.spec import CalibrationSpec
from slimformer.calibration.stats import Collect, StatsRecorder
from slimformer.methods.base import StageContext, register_method
from slimformer.methods.selection import LinearSelection
from slimformer.model import SlimModel
from slimformer.nn import Int8DynamicLinear, replace_module
from slimformer.nn.int8_static import Int8StaticLinear, input_scale_from_range

if TYPE_CHECKING:
    from slimformer.calibration.engine import BlockContext

Activations = Literal["per_tensor", "per_token"]


class W8A8Settings(LinearSelection):
    """Settings every W8A8 method shares: how activations are quantized, and on which data."""

    activations: Activations = Field(
        default="per_tensor",
        description="per_tensor: one static step calibrated per layer; per_token: dynamic",
    )
    clip: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="per_tensor only: share of the calibrated max |x| that maps to 127",
    )
    calibration: CalibrationSpec = CalibrationSpec()


class W8A8(W8A8Settings):
    """Naive W8A8: int8 weights per channel, int8 activations static per tensor or per token."""

    method = "w8a8"
    family = "quantization"


def quantized_linear(linear: nn.Linear, config: W8A8Settings, abs_max: Tensor | None) -> nn.Module:
    """The int8 replacement of ``linear``; ``abs_max`` is its input range per channel."""
    if config.activations == "per_token":
        return Int8DynamicLinear.from_linear(linear)
    if abs_max is None:
        raise ValueError("a static int8 layer needs its calibrated input range")
    return Int8StaticLinear.from_linear(linear, input_scale_from_range(abs_max, config.clip))


def quantize_rest(
    slim: SlimModel,
    names: list[str],
    config: W8A8Settings,
    windows: Tensor | None,
) -> None:
    """Quantize selected linears the block walk did not reach, calibrating them if needed."""
    if not names:
        return
    ranges = (
        {name: None for name in names}
        if config.activations == "per_token"
        else _input_ranges(slim.model, names, windows)
    )
    for name in names:
        linear = slim.model.get_submodule(name)
        replace_module(slim.model, name, quantized_linear(linear, config, ranges[name]))


def _input_ranges(model: nn.Module, names: list[str], windows: Tensor) -> dict[str, Tensor]:
    """Max |x| per input channel of each named linear over one pass of the whole model."""
    linears = {name: model.get_submodule(name) for name in names}
    device = next(iter(linears.values())).weight.device
    recorder = StatsRecorder(linears, Collect(abs_max=True), device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), recorder:
            for ids in windows.to(device).split(1):
                model(input_ids=ids, attention_mask=torch.ones_like(ids))
    finally:
        model.train(was_training)
    return {name: stats.abs_max for name, stats in recorder.stats.items()}


def calibrated_quantization(
    slim: SlimModel,
    config: W8A8Settings,
    context: StageContext,
    process: Callable[[BlockContext], None],
    targets: dict[str, nn.Linear],
) -> None:
    """Run ``process`` on every block with input ranges, then quantize what lies outside."""
    windows = calibrate(slim, config.calibration, process, context, collect=Collect(abs_max=True))
    quantize_rest(slim, _still_float(slim.model, targets), config, windows)


def _still_float(model: nn.Module, targets: dict[str, nn.Linear]) -> list[str]:
    """Targets still in the model as they were (outside the stack of blocks)."""
    modules = dict(model.named_modules())
    return [name for name, linear in targets.items() if modules.get(name) is linear]


@register_method(W8A8)
def apply_w8a8(slim: SlimModel, config: W8A8, context: StageContext) -> None:
    targets = config.select(slim)
    if config.activations == "per_token":  # nothing to calibrate
        quantize_rest(slim, list(targets), config, None)
        return

    def process(block: BlockContext) -> None:
        for name, linear in block.linears.items():
            if name in targets:
                module = quantized_linear(linear, config, block.stats[name].abs_max)
                replace_module(slim.model, name, module)

    calibrated_quantization(slim, config, context, process, targets)
