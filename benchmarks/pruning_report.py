"""Markdown, JSON and plots for benchmarks/pruning.py (kept apart: no measuring here)."""

from __future__ import annotations

from pathlib import Path

from slimformer.report.figures import Figure, figure_links, save_figures
from slimformer.report.runs import measured_on, ok, save_runs
from slimformer.report.tables import failed, fmt, header, identical, speedup

DENSE = {"smollm2-135m": "lm-dense", "minilm-intent": "cls-dense"}
STRUCTURED = ("heads", "ffn", "layers")
LM_COLUMNS = (
    "method",
    "perplexity",
    "x dense",
    "sparsity",
    "disk MB",
    "x dense bytes",
    "compress s",
    "peak RSS GB",
    "prefill 1x512 ms",
    "x dense",
    "reload identical",
)
STRUCTURED_COLUMNS = (
    "pruning",
    "accuracy",
    "points vs dense",
    "parameters (M)",
    "outside embeddings (M)",
    "x dense",
    "disk MB",
    "batch 32x128 ms",
    "x dense",
    "compress s",
    "peak RSS GB",
    "reload identical",
)
MOVEMENT_COLUMNS = (
    "sparsity",
    "seed",
    "movement accuracy",
    "magnitude accuracy",
    "movement - magnitude (points)",
    "movement disk MB",
    "movement train s",
    "magnitude train s",
)


def write_report(rows, results: dict[str, dict], machine: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_runs(out / "pruning.json", machine, results)
    plots = _plots(rows, results, out)
    lines = [
        "# Pruning benchmark",
        "",
        f"Measured by `benchmarks/pruning.py` on {measured_on(machine)}. "
        "Compression wall time, peak memory, bytes "
        "and quality come from one process per row (load, compress, save, reload, evaluate); "
        "latencies from one process that runs every timed model, interleaved in rounds (medians).",
        "",
        *_lm_section(rows, results),
        "",
        *_structured_section(rows, results),
        "",
        *_movement_section(rows, results),
        "",
        *figure_links(plots),
        "",
        *_notes(),
    ]
    (out / "pruning.md").write_text("\n".join(lines) + "\n")


def _lm_section(rows, results) -> list[str]:
    lm = [r for r in rows if r.model == "smollm2-135m"]
    dense = results.get(DENSE["smollm2-135m"], {})
    if not lm or not ok(dense):
        return []
    detail = dense.get("eval_detail", {})
    lines = [
        "## smollm2-135m on wiki: unstructured and N:M",
        "",
        f"Perplexity on the wiki test split ({detail.get('windows', '?')} windows of "
        f"{detail.get('window', '?')} tokens). Calibration: 64 windows x 512 tokens of the wiki "
        "train split (seed 0), bf16 block passes. Every attention and MLP linear is pruned; "
        "embeddings and the (tied) head stay dense. Disk is the whole saved folder.",
        "",
        *header(LM_COLUMNS),
    ]
    base = dense.get("latency", {}).get("prefill_1x512_ms")
    for row in lm:
        result = results.get(row.name, {})
        if not ok(result):
            lines.append(failed(row.label, result, len(LM_COLUMNS) - 2))
            continue
        ppl = result["quality"]["value"]
        size = result["disk_bytes"]
        ms = result.get("latency", {}).get("prefill_1x512_ms")
        sparsity = result.get("sparsity_of_pruned_layers")
        lines.append(
            f"| {row.label} | {ppl:.2f} | {ppl / dense['quality']['value']:.3f} | "
            f"{'-' if sparsity is None else f'{sparsity:.1%}'} | "
            f"{size / 1e6:.1f} | {size / dense['disk_bytes']:.2f} | "
            f"{result['compress_s']:.1f} | {result['peak_rss_bytes'] / 1e9:.2f} | "
            f"{fmt(ms, '.0f')} | {speedup(base, ms)} | {identical(result['reload_identical'])} |"
        )
    return lines


def _structured_section(rows, results) -> list[str]:
    chosen = [r for r in rows if r.model == "minilm-intent" and r.series not in _MOVEMENT]
    dense = results.get(DENSE["minilm-intent"], {})
    if not chosen or not ok(dense):
        return []
    lines = [
        "## minilm-intent on intent: structured pruning (parts removed for real)",
        "",
        "Accuracy on the 193 intent test examples (one example is 0.52 points). Parts are scored "
        "on intent train data (heads: gradient importance; neurons: Taylor; layers: similarity "
        "of a layer's input and output) and sliced out of the weights and the config. One-shot "
        "rows have no fine-tune after pruning. Latency: batch 32 x seq 128, eager.",
        "",
        *header(STRUCTURED_COLUMNS),
    ]
    base = dense.get("latency", {}).get("batch32x128_ms")
    for row in chosen:
        result = results.get(row.name, {})
        if not ok(result):
            lines.append(failed(row.label, result, len(STRUCTURED_COLUMNS) - 2))
            continue
        acc = result["quality"]["value"]
        ms = result.get("latency", {}).get("batch32x128_ms")
        encoder = result["params_outside_embeddings"]
        lines.append(
            f"| {row.label} | {100 * acc:.2f}% | {100 * (acc - dense['quality']['value']):+.2f} | "
            f"{result['params'] / 1e6:.2f} | {encoder / 1e6:.2f} | "
            f"{encoder / dense['params_outside_embeddings']:.2f} | "
            f"{result['disk_bytes'] / 1e6:.1f} | {fmt(ms, '.0f')} | {speedup(base, ms)} | "
            f"{result['compress_s']:.1f} | {result['peak_rss_bytes'] / 1e9:.2f} | "
            f"{identical(result['reload_identical'])} |"
        )
    return lines


_MOVEMENT = ("movement", "magnitude")


def _movement_section(rows, results) -> list[str]:
    chosen = [r for r in rows if r.model == "minilm-intent" and r.series in _MOVEMENT]
    if not chosen:
        return []
    lines = [
        "## minilm-intent on intent: movement pruning against magnitude pruning",
        "",
        "Both fine-tune the model on intent while the sparsity of every attention and MLP "
        "linear rises on the same cubic schedule; movement keeps the weights with the highest "
        "learned scores, magnitude those with the largest |w| (Sanh et al., 2020). Embeddings "
        "and the head stay dense.",
        "",
        *header(MOVEMENT_COLUMNS),
    ]
    for x, seed in sorted({(r.x, r.extra.get("seed", 0)) for r in chosen}):
        pair = {
            r.series: results.get(r.name, {})
            for r in chosen
            if (r.x, r.extra.get("seed", 0)) == (x, seed)
        }
        move, mag = pair.get("movement", {}), pair.get("magnitude", {})
        if not (ok(move) and ok(mag)):
            lines.append(
                f"| {x:.0%} | {seed} | {move.get('error', '-')} | {mag.get('error', '-')} |||||"
            )
            continue
        a, b = move["quality"]["value"], mag["quality"]["value"]
        lines.append(
            f"| {x:.0%} | {seed} | {100 * a:.2f}% | {100 * b:.2f}% | {100 * (a - b):+.2f} | "
            f"{move['disk_bytes'] / 1e6:.1f} | {move['compress_s']:.0f} | {mag['compress_s']:.0f} |"
        )
    return lines


def _notes() -> list[str]:
    return [
        "## Reading the tables",
        "",
        "- Unstructured and N:M sparse layers are stored compactly (a bitmask and the kept "
        "values; or the kept values and their 2-bit positions for 2:4 and 4:8), so bytes on "
        "disk fall with sparsity. On a CPU they are **not faster**: the forward pass rebuilds "
        "the dense weight and runs the ordinary dense product, and dense kernels multiply zeros "
        "as fast as any other number. 2:4 is only faster on GPUs with sparse tensor cores; "
        "`benchmarks/sparse_kernels.py` measures where a sparse CPU kernel (CSR) wins.",
        "- Structured pruning removes heads, neurons or layers from the weight matrices and the "
        "config: the model has fewer parameters and runs faster with ordinary kernels.",
        "- Peak RSS is the compressing process's own peak, model loading included.",
    ]


def _plots(rows, results, out: Path) -> list[str]:
    figures = [
        Figure("pruning_lm_perplexity.png", _plot_lm),
        Figure("pruning_structured_curves.png", _plot_structured),
        Figure("pruning_movement.png", _plot_movement),
    ]
    return save_figures(out, figures, rows, results)


def _plot_lm(ax, rows, results) -> bool:
    patterns = ["50%", "60%", "2:4", "4:8"]
    methods = ["magnitude", "wanda", "sparsegpt", "wanda+admm", "sparsegpt+admm"]
    width = 0.8 / len(methods)
    drawn = False
    for i, method in enumerate(methods):
        values = []
        for pattern in patterns:
            row = next((r for r in rows if r.label == f"{method} {pattern}"), None)
            result = results.get(row.name, {}) if row else {}
            values.append(result["quality"]["value"] if ok(result) else float("nan"))
        ax.bar([j + width * i for j in range(len(patterns))], values, width=width, label=method)
        drawn = drawn or any(v == v for v in values)
    dense = results.get(DENSE["smollm2-135m"], {})
    if ok(dense):
        ax.axhline(dense["quality"]["value"], color="black", linestyle="--", label="dense")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(patterns))], patterns)
    ax.set_yscale("log")
    ax.set_ylabel("wiki test perplexity (log scale, lower is better)")
    ax.set_title("smollm2-135m: one-shot pruning")
    ax.legend()
    return drawn


def _plot_structured(ax, rows, results) -> bool:
    dense = results.get(DENSE["minilm-intent"], {})
    depth = dense.get("layers") or 1
    drawn = False
    for series, label in zip(STRUCTURED, ("heads", "FFN neurons", "layers"), strict=True):
        points = [
            (r.x / (depth if series == "layers" else 1), results[r.name]["quality"]["value"])
            for r in rows
            if r.series == series and ok(results.get(r.name, {}))
        ]
        if ok(dense):
            points = [(0.0, dense["quality"]["value"]), *points]
        if len(points) > 1:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
            drawn = True
    ax.set_xlabel("share removed (one-shot, no fine-tune)")
    ax.set_ylabel("intent test accuracy")
    ax.set_title("minilm-intent: structured pruning")
    ax.legend()
    return drawn


def _plot_movement(ax, rows, results) -> bool:
    drawn = False
    for series in _MOVEMENT:
        points = sorted(
            (r.x, results[r.name]["quality"]["value"])
            for r in rows
            if r.model == "minilm-intent"
            and r.series == series
            and r.extra.get("seed", 0) == 0
            and ok(results.get(r.name, {}))
        )
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=series)
            drawn = True
    ax.set_xlabel("sparsity of attention and MLP weights")
    ax.set_ylabel("intent test accuracy")
    ax.set_title("minilm-intent: movement vs magnitude pruning while fine-tuning (seed 0)")
    ax.legend()
    return drawn
