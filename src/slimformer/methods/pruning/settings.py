"""Settings every unstructured / N:M pruning method shares: how much, in which pattern, where.

``sparsity`` is the share of weights set to zero in each selected layer.
``pattern`` is ``unstructured`` (any weight may go) or ``N:M`` (``2:4``,
``4:8``: N weights kept in every group of M consecutive inputs of a row,
the layout sparse tensor cores accelerate). An N:M pattern fixes the
sparsity at ``1 - N/M``; leaving ``sparsity`` unset takes that value, and
any other value is refused, so a recipe never says two different things.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator
from torch import nn

from slimformer.calibration.spec import CalibrationSpec
from slimformer.errors import SlimformerError
from slimformer.methods.selection import LinearSelection
from slimformer.model import SlimModel

#: Sparsity used when neither ``sparsity`` nor an N:M pattern says otherwise.
DEFAULT_SPARSITY = 0.5

_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


@dataclass(frozen=True)
class NMPattern:
    """N weights kept in every group of M consecutive inputs of a weight row."""

    n: int
    m: int

    @property
    def sparsity(self) -> float:
        return 1 - self.n / self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


def parse_pattern(pattern: str) -> NMPattern | None:
    """None for ``unstructured``, else the N:M pattern; a ValueError names what is wrong."""
    if pattern == "unstructured":
        return None
    match = _NM.match(pattern)
    if match is None:
        raise ValueError(f"pattern {pattern!r} is neither 'unstructured' nor N:M like '2:4'")
    n, m = int(match[1]), int(match[2])
    if not 0 < n < m:
        raise ValueError(
            f"pattern {pattern!r} keeps {n} of every {m} weights; N:M needs 0 < N < M (e.g. 2:4)"
        )
    return NMPattern(n, m)


class PruningSettings(LinearSelection):
    """Target sparsity and pattern, and the linear layers they apply to."""

    sparsity: float | None = Field(
        default=None,
        ge=0.0,
        lt=1.0,
        description="Share of each layer's weights set to zero, in [0, 1); "
        "unset: 0.5, or 1 - N/M for an N:M pattern.",
    )
    pattern: str = Field(
        default="unstructured", description="'unstructured', or N:M such as '2:4' or '4:8'."
    )

    @field_validator("pattern")
    @classmethod
    def _valid_pattern(cls, value: str) -> str:
        parsed = parse_pattern(value)
        return value if parsed is None else str(parsed)

    @model_validator(mode="after")
    def _sparsity_agrees_with_pattern(self) -> PruningSettings:
        nm = self.nm()
        if nm is not None and self.sparsity is not None and abs(self.sparsity - nm.sparsity) > 1e-9:
            raise ValueError(
                f"pattern {nm} sets sparsity {nm.sparsity:g}, but sparsity is {self.sparsity:g}; "
                "leave sparsity unset or make them agree"
            )
        return self

    def nm(self) -> NMPattern | None:
        return parse_pattern(self.pattern)

    def target(self) -> float:
        """The sparsity every selected layer (or, with allocation, the model) reaches."""
        nm = self.nm()
        if nm is not None:
            return nm.sparsity
        return DEFAULT_SPARSITY if self.sparsity is None else self.sparsity

    def checked_targets(self, slim: SlimModel) -> dict[str, nn.Linear]:
        """The selected layers, each checked against the pattern before any is changed."""
        targets = self.select(slim)
        nm = self.nm()
        for name, linear in targets.items():
            if nm is not None and linear.in_features % nm.m:
                raise SlimformerError(
                    f"pattern {nm} needs groups of {nm.m} inputs, but {name} has "
                    f"{linear.in_features} inputs ({linear.in_features} % {nm.m} != 0)",
                    f"choose an M that divides {linear.in_features}, or exclude {name}",
                )
        return targets


class CalibratedPruning(PruningSettings):
    """Pruning that learns from data: calibration text and per-layer sparsity allocation."""

    calibration: CalibrationSpec = CalibrationSpec()
    true_sequential: bool = Field(
        default=True,
        description="prune q/k/v, then o, then gate/up, then down, each on the inputs the "
        "already-pruned layers before it produce (one block pass instead of two)",
    )
    allocation: Literal["uniform", "owl"] = Field(
        default="uniform",
        description="'uniform': every layer at the target; 'owl': blocks with more "
        "activation outliers keep more weights, the parameter-weighted mean stays at the target.",
    )
    owl_threshold: PositiveFloat = Field(
        default=5.0, description="OWL: a weight is an outlier if its score exceeds this x mean."
    )
    owl_lambda: float = Field(
        default=0.08, ge=0.0, lt=0.5, description="OWL: block sparsities span target +- lambda."
    )
    refine: Literal["none", "admm"] = Field(
        default="none",
        description="'admm': once the mask is chosen, re-solve the kept weights for the least "
        "output error on the calibration inputs (Boža, 2024); 'none': the method's own weights.",
    )
    refine_iterations: PositiveInt = Field(default=5, description="ADMM iterations per layer.")
    refine_rho: PositiveFloat = Field(
        default=0.5, description="ADMM penalty, relative to the unit-scaled input Hessian."
    )

    @model_validator(mode="after")
    def _owl_needs_unstructured(self) -> CalibratedPruning:
        if self.allocation == "owl" and self.nm() is not None:
            raise ValueError(
                f"allocation 'owl' varies sparsity per block, pattern {self.pattern} fixes it; "
                "use allocation 'uniform' with N:M patterns"
            )
        return self
