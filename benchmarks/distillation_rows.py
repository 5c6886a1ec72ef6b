"""What the distillation benchmark and its report share: row names, seeds, training settings.

``distillation.py`` builds its rows from these and ``distillation_report.py``
judges its targets by them; both import this module and neither imports the
other, so the report can be written again from saved results alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rowbench import EXAMPLES

D3_EXAMPLE = EXAMPLES / "distill-3layer.yaml"
D2_EXAMPLE = EXAMPLES / "distill-2layer.yaml"
#: Training settings a data condition shares (the rest of a distill stage is the row's).
_TRAIN_KEYS = ("epochs", "lr", "batch_size", "eval_every", "max_length", "warmup", "seed")
_TRANSFER_KEYS = ("transfer", "transfer_limit")


def example_stages(path: Path) -> list[dict[str, Any]]:
    """The stages of a recipe file."""
    return yaml.safe_load(path.read_text())["stages"]


def example_distill(path: Path) -> dict[str, Any]:
    """The distill stage of a recipe file, its ``train:`` settings read beside the others."""
    stage = next(stage for stage in example_stages(path) if stage["method"] == "distill")
    return {**{k: v for k, v in stage.items() if k != "train"}, **stage.get("train", {})}


def _settings(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """The ``keys`` a recipe's distill stage sets, in the order of ``keys``."""
    stage = example_distill(path)
    return {k: stage[k] for k in keys if k in stage}


#: Intent alone: distill-2layer's settings. With transfer text: distill-3layer's.
TASK_ONLY = _settings(D2_EXAMPLE, _TRAIN_KEYS)
WITH_TRANSFER = _settings(D3_EXAMPLE, (*_TRAIN_KEYS, *_TRANSFER_KEYS))

#: The teachers: each model uncompressed.
TEACHER = {"minilm-intent": "cls-teacher", "smollm2-135m": "lm-teacher"}
#: The rows that run the example files the targets name.
D3_EXAMPLE_ROW = "cls-d3-hidden-wiki"
D2_EXAMPLE_ROW = "cls-d2-hidden"
HEADLINE_ROW = "cls-headline"
#: The half-depth smollm2 student: layers dropped and nothing trained, then distilled.
LM_UNTRAINED, LM_DISTILLED = "lm-half-untrained", "lm-half-distilled"
#: The 3-layer example's teacher-free rivals: they and the example run on every seed.
D3_RIVALS = ("cls-d3-no-teacher", "cls-d3-finetune-stage", "cls-d3-finetune-matched")
#: More seeds for the 3-layer comparison (the rows above are seed 0): one test example is
#: 0.52 points, so one seed cannot tell a teacher's help from the luck of shuffling order
#: and checkpoint choice. Each seed reruns the example and every teacher-free training.
D3_SEEDS = (1, 2, 3)


def seed_row_name(name: str, seed: int) -> str:
    """The row that reruns ``name`` on ``seed`` (seed 0 is the row itself)."""
    return name if seed == 0 else f"{name}-seed{seed}"
