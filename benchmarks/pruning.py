"""The pruning family on smollm2-135m (wiki) and minilm-intent (intent).

Writes benchmarks/results/pruning.md and .json, with plots:

- smollm2-135m, wiki test perplexity: dense vs magnitude, Wanda and SparseGPT
  (as published: Wanda keeps the dense weights, SparseGPT its OBS update) at
  50% and 60% unstructured and at 2:4 and 4:8; Wanda's and SparseGPT's masks
  with the kept weights re-solved by ADMM (``refine: admm``) at 50% and 2:4;
  each with its compression wall time, peak memory and bytes on disk; and 2:4
  SparseGPT + ADMM then W8 (sparse and quantized weights saved together). The
  rows with a recipe in examples/ run that very file.
- minilm-intent, intent test accuracy: one-shot structured pruning curves
  (share of attention heads, of FFN neurons, of layers removed) with latency
  at batch 32 x seq 128 and bytes on disk, and the heads + FFN recipe with
  its recovery fine-tune (examples/structured-minilm.yaml).
- minilm-intent: movement pruning against gradual magnitude pruning (the
  same fine-tune, schedule and budget) at 50%, 70% and 90% sparsity, the 90%
  movement row running examples/movement-90.yaml.

Each row runs in its own process and finished rows are kept in
benchmarks/.work/pruning (see ``rowbench.py``); ``--fresh`` starts over.

Run: ``make bench-prune`` or ``python benchmarks/pruning.py [--rows a,b] [--threads 2]``;
``--render`` writes the report again from its saved JSON, running nothing.
"""

from __future__ import annotations

from typing import Any

import torch
import yaml

from rowbench import BF16_CALIBRATION, EXAMPLES, ROOT, Row, run_benchmark, size_facts

WORK = ROOT / "benchmarks" / ".work" / "pruning"
LM, CLS = "smollm2-135m", "minilm-intent"
#: Example recipes that are benchmark rows as they stand.
EXAMPLE_ROWS = {
    ("magnitude", "50%"): "magnitude-50.yaml",
    ("wanda+admm", "50%"): "wanda-50.yaml",
    ("sparsegpt+admm", "50%"): "sparsegpt-50.yaml",
    ("sparsegpt+admm", "2:4"): "sparsegpt-2of4.yaml",
}
PATTERNS = {"50%": {"sparsity": 0.5}, "60%": {"sparsity": 0.6}, "2:4": {"pattern": "2:4"}}
PATTERNS["4:8"] = {"pattern": "4:8"}
#: (series, stage method, extra settings, patterns): the published methods at every
#: pattern, the ADMM re-solve of their masks at the two the targets name.
METHODS = (
    ("magnitude", "magnitude", {}, tuple(PATTERNS)),
    ("wanda", "wanda", {}, tuple(PATTERNS)),
    ("sparsegpt", "sparsegpt", {}, tuple(PATTERNS)),
    ("wanda+admm", "wanda", {"refine": "admm"}, ("50%", "2:4")),
    ("sparsegpt+admm", "sparsegpt", {"refine": "admm"}, ("50%", "2:4")),
)
#: Latency is timed on these LM rows only: every unstructured method stores alike.
TIMED_LM = {"lm-dense", "lm-magnitude-50", "lm-sparsegpt-2of4", "lm-sparsegpt-2of4-w8"}


def _lm_rows() -> list[Row]:
    rows = [Row("lm-dense", LM, "dense", [], series="dense")]
    for series, method, settings, patterns in METHODS:
        for label in patterns:
            name = f"lm-{series.replace('+', '-')}-{label.replace('%', '').replace(':', 'of')}"
            example = EXAMPLE_ROWS.get((series, label))
            stage = {"method": method, **PATTERNS[label], **settings}
            if method != "magnitude":
                stage["calibration"] = BF16_CALIBRATION
            recipe = str(EXAMPLES / example) if example else [stage]
            rows.append(Row(name, LM, f"{series} {label}", recipe, series=series, x=_x(label)))
    rows.append(
        Row(
            "lm-sparsegpt-2of4-w8",
            LM,
            "sparsegpt+admm 2:4, then W8 (sparse int8 values)",
            str(EXAMPLES / "sparsegpt-2of4-w8.yaml"),
            series="composed",
        )
    )
    return [_timed_or_not(row) for row in rows]


def _x(label: str) -> float:
    """A pattern's sparsity: 50% -> 0.5, 2:4 -> 0.5."""
    if label.endswith("%"):
        return float(label[:-1]) / 100
    n, m = (int(p) for p in label.split(":"))
    return 1 - n / m


def _timed_or_not(row: Row) -> Row:
    return Row(**{**row.__dict__, "extra": {"timed": row.name in TIMED_LM}, "decode": False})


def _structured_rows() -> list[Row]:
    scoring = {"dataset": "intent"}
    rows = [Row("cls-dense", CLS, "dense", [], series="dense", x=0.0)]
    for share in (0.25, 0.3333, 0.5, 0.6667, 0.8333):
        stage = {"method": "prune_heads", "fraction": share, "importance": "gradient", **scoring}
        name = f"cls-heads-{round(share * 100)}"
        rows.append(Row(name, CLS, f"heads -{share:.0%}", [stage], series="heads", x=share))
    for share in (0.25, 0.4, 0.5, 0.6, 0.75):
        stage = {"method": "prune_neurons", "fraction": share, "importance": "taylor", **scoring}
        name = f"cls-ffn-{round(share * 100)}"
        rows.append(Row(name, CLS, f"FFN neurons -{share:.0%}", [stage], series="ffn", x=share))
    for count in (1, 2, 3):
        stage = {"method": "drop_layers", "count": count, "criterion": "similarity", **scoring}
        rows.append(
            Row(f"cls-layers-{count}", CLS, f"layers -{count}", [stage], series="layers", x=count)
        )
    recipe = EXAMPLES / "structured-minilm.yaml"
    one_shot = [s for s in _stages(recipe) if s["method"] != "finetune"]
    rows.append(Row("cls-heads-ffn", CLS, "heads -33% + FFN -50%, no fine-tune", one_shot))
    rows.append(
        Row("cls-structured", CLS, "heads -33% + FFN -50%, recovery fine-tune", str(recipe))
    )
    return rows


def _movement_rows() -> list[Row]:
    """Movement and magnitude at three sparsities, from examples/movement-90.yaml's settings.

    Magnitude is the recipe's own counterpart (its comment): the same stage,
    schedule, epochs and lr, ranking |W| (so no scores). 90% runs two seeds.
    """
    recipe = EXAMPLES / "movement-90.yaml"
    (stage,) = _stages(recipe)
    magnitude = {k: v for k, v in stage.items() if k not in ("score_lr", "score_init")}
    rows = []
    for sparsity, seed in ((0.5, 0), (0.7, 0), (0.9, 0), (0.9, 1)):
        for variant, settings in (("movement", stage), ("magnitude", magnitude)):
            train = {**settings.get("train", {}), "seed": seed}
            settings = {**settings, "sparsity": sparsity, "train": train}
            if variant == "magnitude":
                settings["variant"] = "magnitude"
            name = f"cls-{variant}-{round(sparsity * 100)}" + (f"-seed{seed}" if seed else "")
            example = variant == "movement" and sparsity == 0.9 and seed == 0
            rows.append(
                Row(
                    name,
                    CLS,
                    f"{variant} {sparsity:.0%}, seed {seed}",
                    str(recipe) if example else [settings],
                    series=variant,
                    x=sparsity,
                    extra={"seed": seed},
                )
            )
    return rows


def _stages(recipe) -> list[dict[str, Any]]:
    return yaml.safe_load(recipe.read_text())["stages"]


ROWS = {row.name: row for row in _lm_rows() + _structured_rows() + _movement_rows()}


# -- facts only this benchmark needs -------------------------------------------------


def pruning_facts(slim, row: Row) -> dict[str, Any]:
    """Weights left (all, and outside the embeddings) and the sparsity of pruned layers.

    Counts are logical: a pruned layer counts its whole ``[out, in]`` weight
    (its zeros are in ``sparsity_of_pruned_layers``), a structurally pruned
    one only the rows and columns it kept.
    """
    from slimformer.nn import SparseLinear

    sparse = [m for m in slim.model.modules() if isinstance(m, SparseLinear)]
    weights = sum(m.in_features * m.out_features for m in sparse)
    nonzero = sum(int(m.dense_weight().count_nonzero()) for m in sparse)
    return {
        **size_facts(slim),
        "sparsity_of_pruned_layers": 1 - nonzero / weights if weights else None,
    }


def main() -> None:
    from pruning_report import write_report

    run_benchmark(
        __doc__.splitlines()[0],
        ROWS,
        WORK,
        __file__,
        write_report,
        facts=pruning_facts,
    )


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
