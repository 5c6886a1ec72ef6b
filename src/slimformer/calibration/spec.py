"""Calibration settings shared by every method that learns from data.

A recipe carries them inside the stage (``calibration: {dataset: wiki,
samples: 64, length: 512}``) so the recipe alone reproduces the result;
Python callers may instead pass token windows or a dataset to the verb
(``quantize_(model, GPTQ(), calibration=windows)``).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, PositiveInt

from slimformer.calibration.windows import calibration_windows
from slimformer.errors import SlimformerError
from slimformer.model import SlimModel


class CalibrationSpec(BaseModel):
    """Which text, and how many windows of how many tokens, drawn with which seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = "wiki"
    split: str = "train"
    samples: PositiveInt = 64
    length: PositiveInt = 512
    seed: int = 0
    #: Precision of the calibration passes: bfloat16 is about twice as fast on CPUs with
    #: bf16 instructions; the statistics are accumulated in float32 either way.
    compute_dtype: Literal["float32", "bfloat16"] = "float32"

    def torch_dtype(self) -> torch.dtype | None:
        """The autocast dtype for the engine, None for full precision."""
        return torch.bfloat16 if self.compute_dtype == "bfloat16" else None


def calibration_tokens(slim: SlimModel, spec: CalibrationSpec, given: Any = None) -> torch.Tensor:
    """Token windows [samples, length]: ``given`` (windows or a dataset) wins over ``spec``."""
    if isinstance(given, torch.Tensor):
        if given.dim() != 2 or given.numel() == 0:
            raise SlimformerError(
                f"calibration windows must be a non-empty [samples, length] tensor, "
                f"got shape {tuple(given.shape)}",
                "pass slimformer.calibration_windows(tokenizer, ...)",
            )
        return given
    if slim.tokenizer is None:
        raise SlimformerError(
            f"{slim.name} has no tokenizer to cut calibration text with",
            "pass calibration=<token windows> or load a model folder that has a tokenizer",
        )
    dataset = given if given is not None else spec.dataset
    return calibration_windows(
        slim.tokenizer,
        dataset,
        split=spec.split,
        n=spec.samples,
        length=spec.length,
        seed=spec.seed,
    )
