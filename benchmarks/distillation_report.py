"""Markdown, JSON and plots for benchmarks/distillation.py (kept apart: no measuring here).

Every target line is computed from the results: a missing or failed row
says "not run" with its error, never a figure.
"""

from __future__ import annotations

import math
from pathlib import Path

from distillation_rows import (
    D2_EXAMPLE_ROW,
    D3_EXAMPLE_ROW,
    D3_RIVALS,
    D3_SEEDS,
    HEADLINE_ROW,
    LM_DISTILLED,
    LM_UNTRAINED,
    TASK_ONLY,
    TEACHER,
    WITH_TRANSFER,
    seed_row_name,
)
from slimformer.report.figures import Figure, figure_links, save_figures
from slimformer.report.runs import first_missing, mean, measured_on, ok, save_runs, why_not
from slimformer.report.tables import failed, fmt, header, identical, line, speedup
from slimformer.report.targets import target, unjudged

LATENCY = "batch32x128_ms"
#: The intent test split's size.
INTENT_TEST = 193
STUDENT_COLUMNS = (
    "student",
    "training",
    "accuracy",
    "% of teacher",
    "parameters (M)",
    "outside embeddings (M)",
    "disk MB",
    "batch 32x128 ms",
    "x teacher",
    "train s",
    "reload identical",
)
HEADLINE_COLUMNS = (
    "model",
    "accuracy",
    "% of teacher",
    "disk MB",
    "x smaller",
    "batch 32x128 ms",
    "x faster",
    "layers",
    "heads",
    "FFN",
    "train s",
)
LM_COLUMNS = (
    "model",
    "layers",
    "parameters (M)",
    "mean token loss",
    "perplexity",
    "prefill 1x512 ms",
    "x full",
    "decode ms/token",
    "train s",
)


def write_report(rows, results: dict[str, dict], machine: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_runs(out / "distillation.json", machine, results)
    plots = _plots(rows, results, out)
    lines = [
        "# Distillation benchmark",
        "",
        f"Measured by `benchmarks/distillation.py` on {measured_on(machine)}. "
        "Training wall time, bytes and "
        "quality come from one process per row (load, train, save, reload, evaluate); latencies "
        "from one process that runs every timed model, interleaved in rounds (medians).",
        "",
        *_targets(results),
        "",
        *_students_section(rows, results),
        "",
        *_headline_section(results),
        "",
        *_lm_section(rows, results),
        "",
        *figure_links(plots),
        "",
        *_notes(),
    ]
    (out / "distillation.md").write_text("\n".join(lines) + "\n")


# -- reading results ---------------------------------------------------------------------


def _accuracy(result: dict) -> float:
    return result["quality"]["value"]


def _latency(result: dict, key: str = LATENCY) -> float | None:
    return result.get("latency", {}).get(key)


def _token_loss(result: dict) -> float:
    """Mean token loss in nats: the evaluation's own, or log(perplexity) for older results."""
    loss = result.get("eval_detail", {}).get("mean_loss")
    return loss if loss is not None else math.log(result["quality"]["value"])


# -- targets ---------------------------------------------------------------------------


def _targets(results: dict) -> list[str]:
    return [
        "## Targets (issue 5)",
        "",
        *_d3_targets(results),
        _d2_target(results),
        *_headline_targets(results),
        _lm_target(results),
    ]


def _share(results: dict, name: str) -> float:
    return _accuracy(results[name]) / _accuracy(results[TEACHER["minilm-intent"]])


def _correct(result: dict) -> str:
    detail = result.get("eval_detail", {})
    count = detail.get("n", detail.get("examples"))
    if "correct" in detail and count:
        return f"{detail['correct']}/{count}"
    return f"{100 * _accuracy(result):.2f}%"


def _share_target(what: str, results: dict, row: str, least: float) -> str:
    """Accuracy of ``row`` at least ``least`` of the teacher's."""
    teacher = results[TEACHER["minilm-intent"]]
    share = _share(results, row)
    evidence = f"{_correct(results[row])} vs {_correct(teacher)}: {share:.1%}"
    return target(what, f"accuracy >= {least:.0%} of the teacher", share >= least, evidence)


def _faster_target(what: str, factor: float, versus: str, teacher: dict, result: dict) -> str:
    """At least ``factor`` times the teacher's speed at batch 32 x seq 128, when both were timed."""
    base, ms = _latency(teacher), _latency(result)
    if not (base and ms):
        return unjudged(what, f">= {factor:g}x faster: not timed")
    claim = f">= {factor:g}x faster{versus} at batch 32 x seq 128"
    return target(
        what, claim, base / ms >= factor, f"{ms:.0f} ms vs {base:.0f} ms: {base / ms:.2f}x"
    )


def _d3_targets(results: dict) -> list[str]:
    teacher, row = TEACHER["minilm-intent"], D3_EXAMPLE_ROW
    what = "3-layer student, logits + hidden states + wiki transfer (examples/distill-3layer.yaml)"
    missing = first_missing(results, teacher, row)
    if missing:
        return [unjudged(what, missing)]
    return [
        _share_target(what, results, row, 0.98),
        _d3_versus_no_teacher(results, what),
        _faster_target(what, 1.8, "", results[teacher], results[row]),
    ]


def _seed_accuracies(results: dict, name: str) -> list[float] | None:
    """Seed 0 (the row itself) and every D3_SEEDS rerun of ``name``; None if one is missing."""
    names = [seed_row_name(name, seed) for seed in (0, *D3_SEEDS)]
    if not all(ok(results.get(n)) for n in names):
        return None
    return [_accuracy(results[n]) for n in names]


def _d3_versus_no_teacher(results: dict, what: str) -> str:
    """Strictly better than each teacher-free training: on the mean over seeds when all ran."""
    rivals = [n for n in D3_RIVALS if ok(results.get(n))]
    if not rivals:
        return unjudged(what, "better than without a teacher: not run (no baseline row)")
    claim = "strictly better than the same student trained without a teacher"
    seeds = {n: _seed_accuracies(results, n) for n in (D3_EXAMPLE_ROW, *rivals)}
    if all(seeds.values()):
        means = {n: mean(v) for n, v in seeds.items()}
        best = max(means[n] for n in rivals)
        versus = ", ".join(f"`{n}` {_in_examples(means[n])}" for n in rivals)
        return target(
            what,
            f"{claim}, mean of {len(seeds[D3_EXAMPLE_ROW])} seeds",
            means[D3_EXAMPLE_ROW] > best,
            f"{_in_examples(means[D3_EXAMPLE_ROW])} vs {versus}; per seed in the table below",
        )
    best = max(_accuracy(results[n]) for n in rivals)
    versus = ", ".join(f"`{n}` {_correct(results[n])}" for n in rivals)
    return target(
        what,
        f"{claim}, seed 0 only",
        _accuracy(results[D3_EXAMPLE_ROW]) > best,
        f"{_correct(results[D3_EXAMPLE_ROW])} vs {versus}",
    )


def _in_examples(accuracy: float) -> str:
    """A mean accuracy as correct test examples out of the intent test split."""
    return f"{accuracy * INTENT_TEST:.2f}/{INTENT_TEST}"


def _d2_target(results: dict) -> str:
    what = "2-layer student (examples/distill-2layer.yaml)"
    missing = first_missing(results, TEACHER["minilm-intent"], D2_EXAMPLE_ROW)
    if missing:
        return unjudged(what, missing)
    return _share_target(what, results, D2_EXAMPLE_ROW, 0.95)


def _headline_targets(results: dict) -> list[str]:
    teacher, row = TEACHER["minilm-intent"], HEADLINE_ROW
    what = "headline recipe (examples/headline.yaml)"
    missing = first_missing(results, teacher, row)
    if missing:
        return [unjudged(what, missing)]
    t, h = results[teacher], results[row]
    smaller = t["disk_bytes"] / h["disk_bytes"]
    return [
        _faster_target(what, 4, " than fp32", t, h),
        target(
            what,
            ">= 4x smaller on disk than fp32",
            smaller >= 4,
            f"{h['disk_bytes'] / 1e6:.1f} MB vs {t['disk_bytes'] / 1e6:.1f} MB: {smaller:.2f}x",
        ),
        _share_target(what, results, row, 0.98),
    ]


def gap_recovered(teacher: float, untrained: float, distilled: float) -> float | None:
    """Share of the token-loss gap (untrained student - teacher) that distillation closes."""
    gap = untrained - teacher
    return None if gap <= 0 else (untrained - distilled) / gap


def _lm_target(results: dict) -> str:
    what = "smollm2-135m half depth (examples/distill-smollm2-half.yaml)"
    names = (TEACHER["smollm2-135m"], LM_UNTRAINED, LM_DISTILLED)
    missing = first_missing(results, *names)
    if missing:
        return unjudged(what, missing)
    t, u, d = (_token_loss(results[n]) for n in names)
    share = gap_recovered(t, u, d)
    if share is None:
        return unjudged(what, f"no gap to recover (untrained {u:.3f} <= full {t:.3f} nats/token)")
    minutes = results[LM_DISTILLED]["compress_s"] / 60
    return target(
        what,
        "distillation recovers >= half the token-loss gap",
        share >= 0.5,
        f"{share:.1%}: full {t:.3f}, layers dropped {u:.3f}, distilled {d:.3f} nats/token; "
        f"{minutes:.1f} min of training",
    )


# -- tables ----------------------------------------------------------------------------------


def _settings_line() -> list[str]:
    def show(settings: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in settings.items())

    return [
        f"- intent alone: {show(TASK_ONLY)} (from examples/distill-2layer.yaml);",
        f"- intent + transfer text: {show(WITH_TRANSFER)} (from examples/distill-3layer.yaml).",
    ]


def _students_section(rows, results) -> list[str]:
    teacher = results.get(TEACHER["minilm-intent"])
    chosen = [r for r in rows if r.model == "minilm-intent" and r.series not in _APART]
    if not chosen or not ok(teacher):
        return []
    lines = [
        "## minilm-intent on intent: students of the fine-tuned teacher",
        "",
        "Accuracy on the 193 intent test examples (one example is 0.52 points). Depth students "
        "copy the teacher's layers; the narrow student keeps all six layers and a quarter of "
        "each FFN (Taylor-scored on intent train). Held-out checkpoint choice uses 10% of the "
        "intent train split (never the test split); transfer text is "
        f"{WITH_TRANSFER['transfer_limit']} {WITH_TRANSFER['transfer']} sentences the teacher "
        "labels on the fly. The settings of each data condition:",
        "",
        *_settings_line(),
        "",
        *header(STUDENT_COLUMNS),
    ]
    base = _latency(teacher)
    for row in chosen:
        result = results.get(row.name)
        if not ok(result):
            lines.append(failed(row.label, result, len(STUDENT_COLUMNS) - 2))
            continue
        ms = _latency(result)
        train = "-" if row.recipe == [] else f"{result['compress_s']:.0f}"
        lines.append(
            f"| {row.extra.get('student_label', 'teacher')} | {row.label} | "
            f"{_correct(result)} | {_accuracy(result) / _accuracy(teacher):.1%} | "
            f"{result['params'] / 1e6:.2f} | {result['params_outside_embeddings'] / 1e6:.2f} | "
            f"{result['disk_bytes'] / 1e6:.1f} | {fmt(ms, '.0f')} | {speedup(base, ms)} | "
            f"{train} | {identical(result['reload_identical'])} |"
        )
    seeds = _seeds_section(results)
    return [*lines, "", *seeds] if seeds else lines


#: Series with their own section: the headline recipe, the 3-layer seed reruns.
_APART = ("headline", "d3-seeds")


def _seeds_section(results) -> list[str]:
    """The 3-layer example and its teacher-free twins, seed by seed."""
    names = (D3_EXAMPLE_ROW, *D3_RIVALS)
    if not any(ok(results.get(seed_row_name(n, s))) for n in names for s in D3_SEEDS):
        return []
    seeds = (0, *D3_SEEDS)
    lines = [
        "### The 3-layer student, seed by seed",
        "",
        "The seed orders the training data, picks the held-out 10% and seeds dropout; the "
        "student's weights always start as the teacher's layers 0, 2 and 4. Correct intent test "
        "answers out of 193 (the teacher: "
        f"{_correct(results[TEACHER['minilm-intent']])}):",
        "",
        *header(["training", *(f"seed {s}" for s in seeds), "mean"]),
    ]
    for name in names:
        cells = [results.get(seed_row_name(name, s)) for s in seeds]
        values = _seed_accuracies(results, name)
        average = "-" if values is None else _in_examples(mean(values))
        lines.append(line([f"`{name}`", *(_correct(c) if ok(c) else "-" for c in cells), average]))
    return lines


def _headline_section(results) -> list[str]:
    teacher, headline = results.get(TEACHER["minilm-intent"]), results.get(HEADLINE_ROW)
    if not ok(teacher):
        return []
    lines = [
        "## The headline recipe against the fp32 teacher",
        "",
        "`examples/headline.yaml`: structured pruning, distillation from the original model, "
        "dynamic int8 linears and int8 embeddings. Latency through the saved model's own "
        "runtime (compiled for int8).",
        "",
    ]
    if not ok(headline):
        return [*lines, f"Could not run: {why_not(headline)}"]
    base = _latency(teacher)
    lines += [
        *header(HEADLINE_COLUMNS),
    ]
    for name, result in (("fp32 teacher", teacher), ("headline", headline)):
        lines.append(
            f"| {name} | {_correct(result)} | "
            f"{_accuracy(result) / _accuracy(teacher):.1%} | {result['disk_bytes'] / 1e6:.1f} | "
            f"{teacher['disk_bytes'] / result['disk_bytes']:.2f}x | "
            f"{fmt(_latency(result), '.0f')} | {speedup(base, _latency(result))} | "
            f"{result.get('layers', '-')} | {result.get('heads', '-')} | "
            f"{result.get('intermediate_size', '-')} | "
            f"{'-' if result is teacher else format(result['compress_s'], '.0f')} |"
        )
    return lines


def _lm_section(rows, results) -> list[str]:
    lm = [r for r in rows if r.model == "smollm2-135m"]
    teacher = results.get(TEACHER["smollm2-135m"])
    if not lm or not ok(teacher):
        return []
    detail = teacher.get("eval_detail", {})
    lines = [
        "## smollm2-135m on wiki: half depth, before and after distillation",
        "",
        f"Wiki test split, {detail.get('windows', '?')} windows of {detail.get('window', '?')} "
        "tokens. Mean token loss is in nats per predicted token (log perplexity). The untrained "
        "row drops the very layers the distilled row drops (`drop_layers` with the example's "
        "complement), weights copied, nothing trained. The SmolLM2 weights were published in "
        "4-bit (Q4_1), so the full model already carries 4-bit rounding.",
        "",
        *header(LM_COLUMNS),
    ]
    base = _latency(teacher, "prefill_1x512_ms")
    for row in lm:
        result = results.get(row.name)
        if not ok(result):
            lines.append(failed(row.label, result, len(LM_COLUMNS) - 2))
            continue
        prefill = _latency(result, "prefill_1x512_ms")
        trained = "distill" in result["methods"]
        train = f"{result['compress_s']:.0f}" if trained else "-"
        lines.append(
            f"| {row.label} | {result.get('layers', '-')} | {result['params'] / 1e6:.1f} | "
            f"{_token_loss(result):.3f} | {result['quality']['value']:.2f} | "
            f"{fmt(prefill, '.0f')} | {speedup(base, prefill)} | "
            f"{fmt(_latency(result, 'decode_ms_per_token'), '.1f')} | {train} |"
        )
    names = (TEACHER["smollm2-135m"], LM_UNTRAINED, LM_DISTILLED)
    if all(ok(results.get(n)) for n in names):
        t, u, d = (_token_loss(results[n]) for n in names)
        share = gap_recovered(t, u, d)
        lines += [
            "",
            f"Gap in mean token loss, layers dropped - full: {u - t:.3f} nats; closed by "
            f"distillation: {u - d:.3f} nats"
            + ("." if share is None else f" ({share:.1%} of the gap)."),
        ]
    return lines


def _notes() -> list[str]:
    return [
        "## Reading the tables",
        "",
        '- "no teacher (hard labels, distill loop)" is the distill stage with the hard-label '
        "loss alone: the same trainer, schedule, held-out checkpoint choice and data as the "
        "distilled rows, so the teacher's signal is the only difference. Its train time still "
        "includes the teacher's forward passes, whose outputs get zero weight. \"drop_layers + "
        'finetune stage" has no teacher at all, trains on all 500 train examples and ends with '
        "its last weights.",
        "- Train s is the whole recipe's wall time in the row's process: the narrow student's "
        "includes scoring its FFN neurons, every distilled row includes the teacher's forward "
        "passes and the held-out evaluations that pick the best checkpoint.",
        '- Parameters are logical weights (int8 weights count once each); "outside '
        'embeddings" leaves out the token, position and type tables, about half of MiniLM.',
        "- On a shared machine timings move by several percent between runs; latencies are "
        "interleaved so drift hits every row alike.",
    ]


# -- plots -------------------------------------------------------------------------------


def _plots(rows, results, out: Path) -> list[str]:
    figures = [
        Figure("distillation_accuracy_size.png", _plot_accuracy_size, 2),
        Figure("distillation_loss_mixes.png", _plot_mixes),
    ]
    return save_figures(out, figures, rows, results)


def _student_rows(rows, results) -> list:
    """Finished minilm student rows (not the teacher, not the headline)."""
    return [r for r in _seed0(rows) if "student" in r.extra and ok(results.get(r.name))]


def _seed0(rows) -> list:
    """The rows but the seed reruns (the plots show one run of each training)."""
    return [r for r in rows if "seed_of" not in r.extra]


def _plot_accuracy_size(axes, rows, results) -> bool:
    """Accuracy against parameters outside embeddings (left) and latency (right)."""
    chosen = _student_rows(rows, results)
    students = list(dict.fromkeys(r.extra["student_label"] for r in chosen))
    measures = (
        ("params_outside_embeddings", 1e6, "parameters outside embeddings (M)"),
        ("latency", 1.0, "batch 32 x seq 128 ms"),
    )
    for ax, (key, scale, xlabel) in zip(axes, measures, strict=True):
        for color, student in enumerate(students):
            for teacher, marker in ((True, "o"), (False, "x")):
                points = [
                    (_x(results[r.name], key) / scale, _accuracy(results[r.name]))
                    for r in chosen
                    if r.extra["student_label"] == student and r.extra["teacher"] is teacher
                ]
                points = [p for p in points if p[0] == p[0]]
                if points:
                    ax.scatter(
                        *zip(*points, strict=True),
                        marker=marker,
                        color=f"C{color}",
                        label=f"{student}, {'distilled' if teacher else 'no teacher'}",
                    )
        for name, label, marker in (
            (TEACHER["minilm-intent"], "teacher", "*"),
            (HEADLINE_ROW, "headline", "D"),
        ):
            result = results.get(name)
            if ok(result) and _x(result, key) == _x(result, key):
                x = _x(result, key) / scale
                ax.scatter(
                    [x], [_accuracy(result)], marker=marker, s=90, color="black", label=label
                )
        ax.set_xlabel(xlabel)
        ax.set_ylabel("intent test accuracy")
    axes[0].set_title("minilm-intent students: accuracy against size")
    axes[1].set_title("... and against latency")
    axes[0].legend(fontsize=7)
    return bool(chosen)


def _x(result: dict, key: str) -> float:
    value = _latency(result) if key == "latency" else result.get(key)
    return float("nan") if value is None else float(value)


def _plot_mixes(ax, rows, results) -> bool:
    """Accuracy of every training of every student: colour the mix, hatching the transfer."""
    rows = _seed0(rows)
    students = list(dict.fromkeys(r.extra["student_label"] for r in rows if "student" in r.extra))
    trainings = list(
        dict.fromkeys(
            (r.extra["mix"], r.extra["transfer"], r.label) for r in rows if "student" in r.extra
        )
    )
    # One colour a loss mix (with or without transfer); each teacher-free training its own.
    keys = [label if mix == "none" else mix for mix, _, label in trainings]
    colors = {key: f"C{i}" for i, key in enumerate(dict.fromkeys(keys))}
    width = 0.8 / max(len(trainings), 1)
    drawn = False
    for i, (mix, transfer, label) in enumerate(trainings):
        values = [_cell(rows, results, student, label) for student in students]
        ax.bar(
            [j + width * i for j in range(len(students))],
            values,
            width=width,
            label=label,
            color=colors[label if mix == "none" else mix],
            hatch="//" if transfer else None,
            edgecolor="white",
        )
        drawn = drawn or any(v == v for v in values)
    teacher = results.get(TEACHER["minilm-intent"])
    if ok(teacher):
        ax.axhline(_accuracy(teacher), color="black", linestyle="--", label="teacher")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(students))], students)
    ax.set_ylabel("intent test accuracy")
    ax.set_ylim(bottom=0.5)
    ax.set_title("minilm-intent: training without a teacher and with each loss mix")
    ax.legend(fontsize=7, loc="lower left")
    return drawn


def _cell(rows, results, student_label: str, label: str) -> float:
    """One student's accuracy under one training (NaN where it did not run)."""
    for r in rows:
        if r.extra.get("student_label") == student_label and r.label == label:
            result = results.get(r.name)
            return _accuracy(result) if ok(result) else float("nan")
    return float("nan")
