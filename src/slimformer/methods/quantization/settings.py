"""Settings shared by the weight-only quantization methods (RTN, GPTQ, AWQ)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt
from torch import nn

from slimformer.errors import SlimformerError
from slimformer.methods.selection import LinearSelection
from slimformer.model import SlimModel
from slimformer.nn.grid import QuantScheme
from slimformer.nn.sparse_linear import SparseLinear


class WeightOnlySettings(LinearSelection):
    """Bits, group size and grid symmetry, and the layers they apply to."""

    bits: Literal[2, 3, 4, 8] = Field(default=4, description="Bits per weight code.")
    group_size: NonNegativeInt = Field(
        default=128, description="Inputs sharing a scale; 0 = one group per output channel."
    )
    symmetric: bool = Field(
        default=False, description="Symmetric grid (no zero points) instead of min/max."
    )

    def scheme(self) -> QuantScheme:
        return QuantScheme(self.bits, self.group_size, self.symmetric)

    def checked_targets(self, slim: SlimModel, pruned: bool = False) -> dict[str, nn.Module]:
        """The selected layers, each checked against the scheme before any is changed.

        An impossible setting (a group size that does not divide a layer) then
        fails before the model is touched. ``pruned`` admits pruned layers,
        whose kept values take only the 8-bit per-row symmetric grid.
        """
        targets = self.select(slim, pruned=pruned)
        scheme = self.scheme()
        for name, linear in targets.items():
            scheme.validate(linear.in_features, layer=name)
            if isinstance(linear, SparseLinear) and scheme != SparseLinear.VALUE_SCHEME:
                raise SlimformerError(
                    f"{name} is pruned, and its kept values take only 8-bit per-channel "
                    f"symmetric codes, not {self.bits} bits, group_size {self.group_size}",
                    "set `bits: 8, group_size: 0, symmetric: true`, "
                    "or leave the pruned layers out with `exclude`",
                )
        return targets
