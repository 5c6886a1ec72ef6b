"""``slimformer demo``: the main job on the bundled defaults, end to end.

Builds (once, cached) MiniLM fine-tuned on the 7-way intent task, quantizes
it with dynamic int8, and prints the measured before / after table.
"""

from __future__ import annotations

import os
from typing import Any

from slimformer.pipeline import MeasureOptions, compress
from slimformer.recipe import Recipe
from slimformer.report import print_table
from slimformer.zoo import load

DEMO_RECIPE = {
    "name": "int8-demo",
    "description": "dynamic int8 (W8A8) of every attention and MLP linear layer",
    "stages": [{"method": "int8_dynamic"}],
}


def run_demo(
    out: str | os.PathLike = "out/demo", overwrite: bool = False, runs: int = 20
) -> dict[str, Any]:
    """Run the demo and return its report; ``out`` receives model and report."""
    slim = load("minilm-intent")
    report = compress(
        slim,
        Recipe.from_dict(DEMO_RECIPE),
        out,
        eval="intent",
        measure=MeasureOptions(runs=runs),
        overwrite=overwrite,
    )
    print_table(report)
    print(f"report written to {out}/report.md and {out}/report.json")
    return report
