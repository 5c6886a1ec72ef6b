"""Knowledge distillation on minilm-intent (intent) and smollm2-135m (wiki).

Writes benchmarks/results/distillation.md and .json, with plots:

- minilm-intent, intent test accuracy: three students of the fine-tuned
  teacher (its layers 0, 2, 4; its layers 0, 5; all six layers with the FFN
  cut to a quarter of its width by Taylor-scored neuron pruning), each trained
  (a) without a teacher, on the hard labels alone, and (b) with each loss mix
  (logits; logits + hidden states; logits + hidden states + attention), on the
  intent train split alone and with 5000 unlabelled Wikipedia sentences the
  teacher labels on the fly. The narrow student runs the two richer mixes only.
  Accuracy, parameters, bytes on disk, latency at batch 32 x seq 128 and
  training wall time for each; and the headline recipe
  (examples/headline.yaml: structured pruning, distillation, int8 linears and
  int8 embeddings) against the fp32 teacher.
- smollm2-135m, wiki test: the half-depth student (examples/distill-smollm2-half.yaml)
  before training (the same layers dropped, nothing trained) and after its
  fixed CPU budget of distillation, against the full model: mean token loss
  (log perplexity) and the share of the gap distillation recovers.

Training settings come from the example files, so every row of one data
condition trains for the same number of optimizer steps: intent alone uses
examples/distill-2layer.yaml's (6 epochs of 450 examples at lr 2e-4, 90
steps), intent + transfer text uses examples/distill-3layer.yaml's (2 epochs of
5450 items at the same lr 2e-4, 342 steps). Rows that reproduce an example run
the example file itself.

"Without a teacher" is the distill stage with the hard-label loss alone
(``hard_weight: 1``: the teacher's outputs get zero weight), so it shares the
trainer, schedule, held-out checkpoint choice and step budget of the intent-only
distilled rows and differs only in the teacher's signal; its wall time includes the
teacher's (unused) forward passes. The 3-layer student also has a plain
``drop_layers`` + ``finetune`` row: no teacher anywhere, all 500 train
examples, the last weights; and the same for as many steps as the distilled
student with transfer text (a teacher-free student cannot read unlabelled text,
but it can train as long).

The 3-layer example and every teacher-free training also run on seeds 1-3
(``D3_SEEDS``): the verdict on "better than without a teacher" is the 4-seed mean.

Expected run time on 2 free cores: 35 minilm rows of 0.5-6 minutes each (load,
train, save, reload, evaluate; ~1.5 h), the 3 smollm2 rows ~35 min (at most 20
minutes of distillation plus three perplexity evaluations), latency ~5 min:
about 2 hours 15 minutes in all. ``--rows`` runs a subset. Each row
runs in its own process and finished rows are kept in
benchmarks/.work/distillation (see ``rowbench.py``); ``--fresh`` starts over.

Run: ``make bench-distill`` or ``python benchmarks/distillation.py [--rows a,b] [--threads 2]``;
``--render`` writes the report again from its saved JSON, running nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from distillation_rows import (
    D2_EXAMPLE,
    D3_EXAMPLE,
    D3_EXAMPLE_ROW,
    D3_RIVALS,
    D3_SEEDS,
    HEADLINE_ROW,
    LM_DISTILLED,
    LM_UNTRAINED,
    TASK_ONLY,
    TEACHER,
    WITH_TRANSFER,
    example_distill,
    example_stages,
    seed_row_name,
)
from rowbench import EXAMPLES, ROOT, Row, run_benchmark, size_facts
from slimformer.methods.distillation.stage import Distill
from slimformer.training.settings import TrainSettings

WORK = ROOT / "benchmarks" / ".work" / "distillation"
LM, CLS = "smollm2-135m", "minilm-intent"
LM_EXAMPLE = EXAMPLES / "distill-smollm2-half.yaml"
HEADLINE = EXAMPLES / "headline.yaml"


def _loss(stage: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(loss for loss in stage["losses"] if loss["kind"] == kind)


_D3, _D2 = example_distill(D3_EXAMPLE), example_distill(D2_EXAMPLE)
_LOGITS, _HIDDEN = _loss(_D3, "logits"), _loss(_D3, "hidden_mse")
#: The loss mixes, richest last; weights and settings as in the examples.
MIXES: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "logits": ("logits", [_LOGITS]),
    "hidden": ("logits + hidden", [_LOGITS, _HIDDEN]),
    "attention": (
        "logits + hidden + attention",
        [_LOGITS, _HIDDEN, {"kind": "attention_mse", "layer_map": "uniform"}],
    ),
}
#: The hard-label loss alone: the teacher's outputs get no weight.
HARD_LABELS_ONLY = [{"kind": "logits", "hard_weight": 1.0}]


@dataclass(frozen=True)
class Student:
    """A student shape: the teacher's layers to keep, stages that narrow it first, its mixes."""

    key: str
    label: str
    layers: list[int] | None
    before: tuple[dict[str, Any], ...] = ()
    mixes: tuple[str, ...] = tuple(MIXES)


#: The narrow student keeps all six layers and a quarter of the FFN (1536 -> 384 neurons),
#: so its encoder has about the 3-layer student's parameters: width against depth.
NARROW_FFN = {
    "method": "prune_neurons",
    "fraction": 0.75,
    "importance": "taylor",
    "dataset": "intent",
}
STUDENTS = (
    Student("d3", "3 layers (teacher's 0, 2, 4)", _D3["layers"]),
    Student("d2", "2 layers (teacher's 0, 5)", _D2["layers"]),
    Student("ffn", "6 layers, FFN 1/4 wide", None, (NARROW_FFN,), ("hidden", "attention")),
)
#: Cells that are example files: (student, mix, transfer) -> the file.
EXAMPLE_CELLS = {("d3", "hidden", True): D3_EXAMPLE, ("d2", "hidden", False): D2_EXAMPLE}


def distill_stage(student: Student, losses: list[dict[str, Any]], transfer: bool) -> dict[str, Any]:
    """The distill stage of one cell: the student's layers, the losses, a data condition."""
    stage: dict[str, Any] = {"method": "distill", "dataset": "intent"}
    if student.layers is not None:
        stage["layers"] = list(student.layers)
    return nested({**stage, "losses": losses, **(WITH_TRANSFER if transfer else TASK_ONLY)})


def nested(stage: dict[str, Any]) -> dict[str, Any]:
    """A stage with its training settings under ``train:``, as recipes write them."""
    train = {k: v for k, v in stage.items() if k in TrainSettings.model_fields}
    rest = {k: v for k, v in stage.items() if k not in train}
    return {**rest, "train": train} if train else rest


def _student_rows(student: Student) -> list[Row]:
    before = [dict(stage) for stage in student.before]
    extra = {"student": student.key, "student_label": student.label}
    rows = [
        Row(
            f"cls-{student.key}-no-teacher",
            CLS,
            "no teacher (hard labels, distill loop)",
            [*before, distill_stage(student, HARD_LABELS_ONLY, transfer=False)],
            series=student.key,
            extra={**extra, "mix": "none", "transfer": False, "teacher": False},
        )
    ]
    for mix in student.mixes:
        label, losses = MIXES[mix]
        for transfer in (False, True):
            example = EXAMPLE_CELLS.get((student.key, mix, transfer))
            recipe = (
                str(example) if example else [*before, distill_stage(student, losses, transfer)]
            )
            rows.append(
                Row(
                    f"cls-{student.key}-{mix}" + ("-wiki" if transfer else ""),
                    CLS,
                    label + (" + wiki transfer" if transfer else ""),
                    recipe,
                    series=student.key,
                    extra={**extra, "mix": mix, "transfer": transfer, "teacher": True},
                )
            )
    return rows


#: The intent train split's size: what the finetune stage trains on (no held-out part).
INTENT_TRAIN = 500


def _transfer_steps() -> int:
    """Optimizer steps of the intent + transfer condition (the default share held out)."""
    held_out = Distill.model_fields["holdout_fraction"].default
    items = round(INTENT_TRAIN * (1 - held_out)) + WITH_TRANSFER["transfer_limit"]
    return WITH_TRANSFER["epochs"] * math.ceil(items / WITH_TRANSFER["batch_size"])


def _finetune_stage_row(matched: bool = False) -> Row:
    """The 3-layer student with no teacher anywhere: drop the other layers, fine-tune.

    ``finetune`` trains on the whole train split and ends with its last
    weights; epochs, lr, batch and length are the intent-only distill settings,
    or with ``matched`` as many epochs as make the step count of the distilled
    student with transfer text (a teacher-free student cannot use unlabelled
    text, but it can train as long).
    """
    student = STUDENTS[0]
    dropped = [i for i in range(6) if i not in student.layers]  # minilm-intent has 6
    train = {k: TASK_ONLY[k] for k in ("epochs", "lr", "batch_size", "max_length")}
    name, label = "cls-d3-finetune-stage", "no teacher (drop_layers + finetune stage)"
    if matched:
        per_epoch = math.ceil(INTENT_TRAIN / train["batch_size"])
        train["epochs"] = max(1, round(_transfer_steps() / per_epoch))
        name = "cls-d3-finetune-matched"
        label = f"no teacher (drop_layers + finetune, {train['epochs']} epochs: the same steps)"
    return Row(
        name,
        CLS,
        label,
        [
            {"method": "drop_layers", "layers": dropped},
            nested({"method": "finetune", "dataset": "intent", **train}),
        ],
        series=student.key,
        extra={
            "student": student.key,
            "student_label": student.label,
            "mix": "none",
            "transfer": False,
            "teacher": False,
        },
    )


def _with_seed(stages: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """``stages`` with every training stage (distill, finetune) seeded with ``seed``."""
    return [
        {**stage, "train": {**stage.get("train", {}), "seed": seed}}
        if stage["method"] in ("distill", "finetune")
        else dict(stage)
        for stage in stages
    ]


def _seed_rows(rows: list[Row]) -> list[Row]:
    """The 3-layer example and its teacher-free rivals again, once per seed of D3_SEEDS."""
    out = []
    for row in (r for r in rows if r.name in (D3_EXAMPLE_ROW, *D3_RIVALS)):
        recipe = example_stages(D3_EXAMPLE) if isinstance(row.recipe, str) else row.recipe
        for seed in D3_SEEDS:
            out.append(
                Row(
                    seed_row_name(row.name, seed),
                    CLS,
                    row.label,
                    _with_seed(recipe, seed),
                    series="d3-seeds",
                    # The seed-0 row's latency stands for its shape.
                    extra={**row.extra, "seed_of": row.name, "seed": seed, "timed": False},
                )
            )
    return out


def _cls_rows() -> list[Row]:
    rows = [Row(TEACHER[CLS], CLS, "teacher (fp32, 6 layers)", [], series="teacher")]
    for student in STUDENTS:
        rows += _student_rows(student)
        if student.key == "d3":
            rows += [_finetune_stage_row(), _finetune_stage_row(matched=True)]
            rows += _seed_rows(rows)
    rows.append(
        Row(
            HEADLINE_ROW,
            CLS,
            "headline: structured prune, distill, int8 + int8 embeddings",
            str(HEADLINE),  # fails with "recipe file ... not found" until the file exists
            series="headline",
        )
    )
    return rows


def _lm_rows() -> list[Row]:
    """Teacher, the half-depth student untrained (layers dropped) and distilled (the example)."""
    kept = example_distill(LM_EXAMPLE)["layers"]
    depth = 30  # smollm2-135m's layers; the facts hook records each row's own count
    dropped = [i for i in range(depth) if i not in kept]
    return [
        Row(TEACHER[LM], LM, "full model (30 layers)", [], series="lm"),
        Row(
            LM_UNTRAINED,
            LM,
            f"{len(kept)} layers kept, no training",
            [{"method": "drop_layers", "layers": dropped}],
            series="lm",
            decode=False,
            extra={"timed": False},  # the same shape as the distilled row
        ),
        Row(
            LM_DISTILLED,
            LM,
            f"{len(kept)} layers kept, distilled (examples/{LM_EXAMPLE.name})",
            str(LM_EXAMPLE),
            series="lm",
        ),
    ]


ROWS = {row.name: row for row in _cls_rows() + _lm_rows()}


# -- facts only this benchmark needs -------------------------------------------------


def distillation_facts(slim, row: Row) -> dict[str, Any]:
    """Logical weights (all, embeddings, the rest), depth and FFN width of a result."""
    config = slim.model.config
    return {
        **size_facts(slim),
        "intermediate_size": getattr(config, "intermediate_size", None),
        "heads": getattr(config, "num_attention_heads", None),
    }


def main() -> None:
    from distillation_report import write_report

    run_benchmark(
        __doc__.splitlines()[0],
        ROWS,
        WORK,
        __file__,
        write_report,
        facts=distillation_facts,
    )


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
