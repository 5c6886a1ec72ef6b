"""Mixed precision: per-layer bit-widths chosen from measured sensitivity under a budget.

Layers differ in how much quantization hurts them. This method measures,
for every selected linear layer and every candidate bit-width, the output
error that round-to-nearest at that width causes on the calibration data,
``trace((W - Q(W)) H (W - Q(W))^T)`` with H the layer's input second moment.
Then it spends a budget of average bits per weight greedily: every layer
starts at the lowest width, and the upgrade that removes the most error per
extra bit goes first, until the budget is used. The most sensitive layers
end at the higher widths; embeddings and the task head are not selected by
default and stay in full precision. Finally each layer is quantized at its
width (GPTQ by default) in a second pass of the sequential engine.

The budget counts code bits of the selected layers' weights; scales and zero
points add a little more on disk (about 0.3 bits at group size 64), which
the report's measured bytes include.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field, NonNegativeInt, PositiveFloat, field_validator

from slimformer.calibration.run import calibrate
from slimformer.calibration.spec import CalibrationSpec
from slimformer.calibration.stats import Collect
from slimformer.errors import SlimformerError
from slimformer.methods.base import StageContext, register_method
from slimformer.methods.quantization.gptq_solver import gptq_quantize
from slimformer.methods.quantization.rtn import round_unvisited
from slimformer.methods.selection import LinearSelection
from slimformer.model import SlimModel
from slimformer.nn import replace_module
from slimformer.nn.grid import QuantScheme, quantize_weight
from slimformer.nn.quantized_linear import WeightOnlyLinear

Bits = Literal[2, 3, 4, 8]


class MixedPrecision(LinearSelection):
    """Per-layer bit-widths from measured sensitivity, under an average-bits budget."""

    method = "mixed_precision"
    family = "quantization"

    average_bits: PositiveFloat = Field(default=4.5, description="budget: mean code bits/weight")
    choices: list[Bits] = Field(
        default=[4, 8],
        description="bit-widths a layer may get (at 4.5 bits on SmolLM2, 3-bit layers "
        "cost more quality than the budget they free)",
    )
    group_size: NonNegativeInt = 64
    symmetric: bool = False
    solver: Literal["gptq", "rtn"] = "gptq"
    damp: PositiveFloat = 0.01
    act_order: bool = Field(default=True, description="GPTQ column order (see gptq)")
    calibration: CalibrationSpec = CalibrationSpec()

    @field_validator("choices")
    @classmethod
    def _sorted_unique(cls, choices: list[int]) -> list[int]:
        if not choices:
            raise ValueError("give at least one bit-width")
        return sorted(set(choices))


@dataclass
class LayerPlan:
    """One layer's size, its measured error at each width, and the width it gets."""

    name: str
    weights: int
    errors: dict[int, float]
    bits: int


def allocate(plans: list[LayerPlan], choices: list[int], average_bits: float) -> None:
    """Greedy: upgrade the layer with the largest error drop per extra bit, within budget."""
    low, high = choices[0], choices[-1]
    if not low <= average_bits <= high:
        raise SlimformerError(
            f"average_bits {average_bits} is outside the choices {choices}",
            f"set average_bits between {low} and {high}, or change the choices",
        )
    budget = average_bits * sum(plan.weights for plan in plans)
    for plan in plans:
        plan.bits = low
    used = low * sum(plan.weights for plan in plans)
    while True:
        best, best_gain = None, 0.0
        for plan in plans:
            if plan.bits == high:
                continue
            upgrade = choices[choices.index(plan.bits) + 1]
            cost = (upgrade - plan.bits) * plan.weights
            if used + cost > budget:
                continue
            gain = (plan.errors[plan.bits] - plan.errors[upgrade]) / cost
            if best is None or gain > best_gain:
                best, best_gain = plan, gain
        if best is None:
            return
        upgrade = choices[choices.index(best.bits) + 1]
        used += (upgrade - best.bits) * best.weights
        best.bits = upgrade


def output_error(weight: torch.Tensor, hessian: torch.Tensor, scheme: QuantScheme) -> float:
    """trace(E H E^T) for the rounding error E of ``scheme``: the layer's output MSE."""
    error = weight.detach().float() - quantize_weight(weight, scheme).dequantize()
    return float(((error @ hessian) * error).sum())


@register_method(MixedPrecision)
def apply_mixed_precision(slim: SlimModel, config: MixedPrecision, context: StageContext) -> None:
    targets = config.select(slim)
    for name, linear in targets.items():
        QuantScheme(config.choices[0], config.group_size, config.symmetric).validate(
            linear.in_features, layer=name
        )
    plans: dict[str, LayerPlan] = {}

    def measure(block) -> None:
        for name, linear in block.linears.items():
            if name in targets:
                hessian = block.stats[name].hessian()
                errors = {
                    bits: output_error(linear.weight, hessian, _scheme(config, bits))
                    for bits in config.choices
                }
                plans[name] = LayerPlan(name, linear.weight.numel(), errors, config.choices[0])

    windows = calibrate(slim, config.calibration, measure, context, collect=Collect(xtx=True))
    for name in targets.keys() - plans.keys():  # outside the layer stack: no statistics
        plans[name] = LayerPlan(name, targets[name].weight.numel(), {}, config.choices[-1])
    allocate([p for p in plans.values() if p.errors], config.choices, config.average_bits)
    _quantize(slim, config, plans, windows, context)
    slim.compression["bit_allocation"] = {name: plan.bits for name, plan in plans.items()}


def _scheme(config: MixedPrecision, bits: int) -> QuantScheme:
    return QuantScheme(bits, config.group_size, config.symmetric)


def _quantize(slim, config, plans, windows, context) -> None:
    def process(block) -> None:
        for name, linear in block.linears.items():
            if name not in plans:
                continue
            scheme = _scheme(config, plans[name].bits)
            if config.solver == "gptq":
                hessian = block.stats[name].hessian()
                weight = gptq_quantize(
                    linear.weight,
                    hessian,
                    scheme,
                    damp=config.damp,
                    act_order=config.act_order,
                    name=name,
                ).weight
            else:
                weight = quantize_weight(linear.weight, scheme)
            replace_module(slim.model, name, WeightOnlyLinear.from_quantized(weight, linear.bias))

    calibrate(
        slim,
        config.calibration,
        process,
        context,
        collect=Collect(xtx=config.solver == "gptq"),
        windows=windows,
    )
    for name, plan in plans.items():
        round_unvisited(slim, [name], _scheme(config, plan.bits))
