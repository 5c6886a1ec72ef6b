"""Round-to-nearest (RTN): 2-8 bit integer weights in groups, no calibration data.

The baseline every weight-only method is measured against: each group of
``group_size`` inputs of a weight row gets its own scale (and zero point) and
every weight is rounded to the nearest grid point. At 8 bits it is nearly
lossless; at 4 bits with groups of 128 it is often usable; below that GPTQ or
AWQ usually do better. ``mse_clip`` searches a clipping ratio per group that
trades a few clamped outliers for finer steps everywhere else. Pruned layers
(magnitude, Wanda, SparseGPT) are quantized too, at 8 bits a row, and stay sparse.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import Field
from torch import nn
from tqdm.auto import tqdm

from slimformer.methods.base import StageContext, register_method
from slimformer.methods.quantization.settings import WeightOnlySettings
from slimformer.model import SlimModel
from slimformer.nn import SparseLinear, WeightOnlyLinear, replace_module
from slimformer.nn.grid import QuantScheme, mse_clip_search, quantize_weight


class RTN(WeightOnlySettings):
    """Round-to-nearest weight-only quantization: 2-8 bit grouped integer weights, no data."""

    method = "rtn"
    family = "quantization"

    mse_clip: bool = Field(
        default=False, description="Search a clipping ratio per group that lowers the error."
    )


def quantize_linear(
    layer: nn.Linear | SparseLinear, scheme: QuantScheme, mse_clip: bool = False
) -> nn.Module:
    """``layer``'s weight rounded onto ``scheme``'s grid, in the module that stores it.

    A dense linear becomes a ``WeightOnlyLinear``; a pruned one stays a
    ``SparseLinear`` whose kept values become int8 codes (the grid is fitted to
    the dense weight, pruned zeros included, which changes nothing for a
    symmetric absmax grid).
    """
    pruned = isinstance(layer, SparseLinear)
    weight = (layer.dense_weight() if pruned else layer.weight.detach()).float()
    clip = mse_clip_search(weight, scheme) if mse_clip else 1.0
    quantized = quantize_weight(weight, scheme, clip)
    if pruned:
        return layer.with_quantized_values(quantized)
    return WeightOnlyLinear.from_quantized(quantized, layer.bias)


@register_method(RTN)
def apply_rtn(slim: SlimModel, config: RTN, context: StageContext) -> None:
    layers = config.checked_targets(slim, pruned=True)
    scheme = config.scheme()
    progress = tqdm(layers.items(), desc="rtn", unit="layer", disable=not context.progress)
    for name, layer in progress:
        replace_module(slim.model, name, quantize_linear(layer, scheme, config.mse_clip))


def round_unvisited(slim: SlimModel, names: Iterable[str], scheme: QuantScheme) -> list[str]:
    """Round (RTN) the named layers that are still float ``nn.Linear``; returns their names.

    Calibrated methods compress what the sequential engine visits: the layers
    inside the stack of blocks. A selected layer outside it (a head, say) gets
    no calibration statistics, so it is rounded rather than left silently in float.
    """
    rounded = []
    for name in names:
        module = slim.model.get_submodule(name)
        if type(module) is nn.Linear:
            replace_module(slim.model, name, quantize_linear(module, scheme))
            rounded.append(name)
    return rounded
