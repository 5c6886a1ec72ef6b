"""Settings shared by the weight-only quantization methods (RTN, GPTQ, AWQ)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt
from torch import nn

from slimformer.methods.quantization.grid import QuantScheme
from slimformer.methods.selection import LinearSelection
from slimformer.model import SlimModel


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

    def checked_targets(self, slim: SlimModel) -> dict[str, nn.Linear]:
        """The selected layers, each checked against the scheme before any is changed.

        An impossible setting (a group size that does not divide a layer) then
        fails before the model is touched.
        """
        targets = self.select(slim)
        scheme = self.scheme()
        for name, linear in targets.items():
            scheme.validate(linear.in_features, layer=name)
        return targets
