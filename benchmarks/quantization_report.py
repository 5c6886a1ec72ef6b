"""Markdown, JSON and plots for benchmarks/quantization.py (kept apart: no measuring here)."""

from __future__ import annotations

from pathlib import Path

from slimformer.report.figures import Figure, figure_links, save_figures
from slimformer.report.runs import measured_on, ok, save_runs
from slimformer.report.tables import failed, fmt, header, identical, speedup

#: What the README's done-when quotes compare against.
DENSE = {"smollm2-135m": "lm-fp32", "minilm-intent": "cls-fp32"}
BITS = "bits/weight (quantized layers)"
LM_COLUMNS = (
    "method",
    "perplexity",
    "x dense",
    "disk MB",
    BITS,
    "compress s",
    "peak RSS GB",
    "prefill 1x512 ms",
    "x fp32",
    "decode ms/token",
    "x fp32",
    "reload identical",
)
CLS_COLUMNS = (
    "method",
    "accuracy",
    "points vs fp32",
    "disk MB",
    BITS,
    "compress s",
    "peak RSS GB",
    "batch 32x128 ms",
    "x fp32",
    "reload identical",
)


def write_report(rows, results: dict[str, dict], machine: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_runs(out / "quantization.json", machine, results)
    plots = _plots(rows, results, out)
    lines = [
        "# Quantization benchmark",
        "",
        f"Measured by `benchmarks/quantization.py` on {measured_on(machine)}. "
        "Compression, peak memory and quality come from one process per row (load, "
        "compress, save, reload, evaluate); latencies from one process that runs "
        "every saved model, interleaved in rounds (medians).",
        "",
        *_lm_section(rows, results),
        "",
        *_cls_section(rows, results),
        "",
        *figure_links(plots),
        "",
        *_notes(),
    ]
    (out / "quantization.md").write_text("\n".join(lines) + "\n")


def _lm_section(rows, results) -> list[str]:
    lm = [r for r in rows if r.model == "smollm2-135m"]
    if not lm:
        return []
    dense = results.get(DENSE["smollm2-135m"], {})
    detail = dense.get("eval_detail", {})
    lines = [
        "## smollm2-135m on wiki",
        "",
        f"Perplexity on the wiki test split: {detail.get('windows', '?')} windows of "
        f"{detail.get('window', '?')} tokens, {detail.get('tokens', '?')} predicted tokens. "
        "Calibration: 64 windows x 512 tokens of the wiki train split (seed 0). Decode: one token "
        "at a time after a 256-token prefix, KV cache, batch 1.",
        "",
        *header(LM_COLUMNS),
    ]
    base_lat = dense.get("latency", {})
    for row in lm:
        lines.append(_lm_line(row, results.get(row.name, {}), dense, base_lat))
    return lines


def _lm_line(row, result, dense, base_lat) -> str:
    if not ok(result):
        return failed(row.label, result, len(LM_COLUMNS) - 2)
    ppl = result["quality"]["value"]
    ratio = ppl / dense["quality"]["value"] if "quality" in dense else float("nan")
    lat = result.get("latency", {})
    return (
        f"| {row.label} | {ppl:.2f} | {ratio:.3f} | {result['disk_bytes'] / 1e6:.1f} | "
        f"{fmt(result.get('linear_bits_per_weight'), '.2f')} | {result['compress_s']:.1f} | "
        f"{result['peak_rss_bytes'] / 1e9:.2f} | "
        f"{fmt(lat.get('prefill_1x512_ms'), '.0f')} | "
        f"{speedup(base_lat.get('prefill_1x512_ms'), lat.get('prefill_1x512_ms'))} | "
        f"{fmt(lat.get('decode_ms_per_token'), '.1f')} | "
        f"{speedup(base_lat.get('decode_ms_per_token'), lat.get('decode_ms_per_token'))} | "
        f"{identical(result.get('reload_identical'))} |"
    )


def _cls_section(rows, results) -> list[str]:
    cls = [r for r in rows if r.model == "minilm-intent"]
    if not cls:
        return []
    dense = results.get(DENSE["minilm-intent"], {})
    base = dense.get("latency", {}).get("batch32x128_ms")
    lines = [
        "## minilm-intent on intent",
        "",
        "Accuracy on the 193 intent test examples (one example is 0.52 points). Calibration: 64 "
        "windows x 128 tokens of intent train text. Latency: batch 32 x seq 128 through the "
        "runtime `slimformer.load` picks (compiled for int8 layers, eager otherwise).",
        "",
        *header(CLS_COLUMNS),
    ]
    for row in cls:
        result = results.get(row.name, {})
        if not ok(result):
            lines.append(failed(row.label, result, len(CLS_COLUMNS) - 2))
            continue
        acc = result["quality"]["value"]
        delta = 100 * (acc - dense["quality"]["value"]) if "quality" in dense else float("nan")
        ms = result.get("latency", {}).get("batch32x128_ms")
        lines.append(
            f"| {row.label} | {100 * acc:.2f}% | {delta:+.2f} | {result['disk_bytes'] / 1e6:.1f} | "
            f"{fmt(result.get('linear_bits_per_weight'), '.2f')} | {result['compress_s']:.1f} | "
            f"{result['peak_rss_bytes'] / 1e9:.2f} | {fmt(ms, '.0f')} | {speedup(base, ms)} | "
            f"{identical(result.get('reload_identical'))} |"
        )
    return lines


def _notes() -> list[str]:
    return [
        "## Reading the table",
        "",
        "- Weight-only formats (RTN, GPTQ, AWQ, mixed) unpack their codes to floats for a prefill "
        "or a batch: there they are slower than fp32, and the table shows by how much. Their speed "
        "is for decoding, where fused kernels read the packed codes (W8 symmetric per-channel: "
        "`_weight_int8pack_mm`; W4 groups of 32-256: `_weight_int4pack_mm_for_cpu`). "
        "W3 layers and the 8-bit layers of mixed precision (which have zero points) have no "
        "fused kernel and unpack their codes on every call: they save bytes, not time, and W3 "
        "decoding is several times slower than fp32.",
        "- Static W8A8 and SmoothQuant run int8 matrix products with calibrated activation scales; "
        "int8 dynamic computes the scales per token at run time.",
        "- Disk MB is the whole saved folder, embeddings included (smollm2 ties its 28 M-parameter "
        "embedding to the head; no method here quantizes it). Bits/weight counts codes, scales and "
        "zero points of the quantized layers only.",
        "- Peak RSS is the compressing process's own peak, model loading included.",
        "- Peers (torchao) are measured in the same run on the same layers; their disk size is "
        "their `torch.save` state dict.",
    ]


def _plots(rows, results, out: Path) -> list[str]:
    figures = [Figure("quantization_lm_size_quality.png", _plot_size_quality)]
    return save_figures(out, figures, rows, results)


def _plot_size_quality(ax, rows, results) -> bool:
    lm = [r for r in rows if r.model == "smollm2-135m" and "quality" in results.get(r.name, {})]
    if not lm:
        return False
    for row in lm:
        result = results[row.name]
        ax.scatter(result["disk_bytes"] / 1e6, result["quality"]["value"])
        ax.annotate(row.label, (result["disk_bytes"] / 1e6, result["quality"]["value"]), fontsize=7)
    ax.set_xlabel("saved size, MB")
    ax.set_ylabel("wiki test perplexity (lower is better)")
    ax.set_yscale("log")
    ax.set_title("smollm2-135m: quality against bytes on disk")
    return True
