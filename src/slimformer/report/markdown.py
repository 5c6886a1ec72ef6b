"""The before / after table, as markdown for files and as rows for the terminal."""

from __future__ import annotations

from typing import Any

from slimformer.report.tables import line

MB = 1e6


def table_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(what, before, after, change) rows, shared by markdown and the terminal."""
    rows: list[tuple[str, str, str, str]] = []
    comparison = report["comparison"]
    quality = comparison.get("quality")
    if quality:
        name = f"{quality['metric']} ({report['after']['eval']['dataset']})"
        change = f"{quality['change']:+.4f}"
        if "changed_predictions" in quality:
            change += f", {quality['changed_predictions']} predictions changed"
        rows.append((name, f"{quality['before']:.4f}", f"{quality['after']:.4f}", change))
    before = report["before"].get("measurement")
    after = report["after"].get("measurement")
    if before and after:
        rows += _size_rows(before, after, comparison)
        rows += _latency_rows(before, after, comparison)
        rows += _memory_energy_rows(before, after)
    return rows


def _size_rows(before, after, comparison) -> list[tuple[str, str, str, str]]:
    b, a = before["size"], after["size"]
    rows = [
        (
            "parameters (non-zero)",
            f"{b['params_total']:,} ({b['params_nonzero']:,})",
            f"{a['params_total']:,} ({a['params_nonzero']:,})",
            "",
        ),
        (
            "size on disk",
            _mb(b["disk_bytes"]),
            _mb(a["disk_bytes"]),
            _times(comparison.get("disk_ratio"), "of before"),
        ),
        (
            "linear weights on disk",
            _mb(b["linear_weight_bytes_on_disk"]),
            _mb(a["linear_weight_bytes_on_disk"]),
            _times(comparison.get("linear_weight_disk_ratio"), "of before"),
        ),
        (
            "weights in memory",
            _mb(b["weight_bytes_in_memory"]),
            _mb(a["weight_bytes_in_memory"]),
            _times(comparison.get("memory_ratio"), "of before"),
        ),
    ]
    return rows


def _latency_rows(before, after, comparison) -> list[tuple[str, str, str, str]]:
    rows = []
    for lb, la in zip(before["latency"], after["latency"], strict=True):
        key = f"{lb['batch']}x{lb['seq_len']}"
        speedup = comparison["speedup"].get(key)
        rows.append(
            (
                f"latency batch {lb['batch']} x seq {lb['seq_len']} ({lb['threads']} threads)",
                _latency(lb),
                _latency(la),
                f"{speedup:.2f}x faster" if speedup else "",
            )
        )
    return rows


def _memory_energy_rows(before, after) -> list[tuple[str, str, str, str]]:
    rows = []
    if before.get("memory") and after.get("memory"):
        rows.append(
            (
                "memory a forward adds (peak process RSS)",
                _memory(before["memory"]),
                _memory(after["memory"]),
                "",
            )
        )
    if before.get("energy") and after.get("energy"):
        label = "energy per sequence"
        if after["energy"]["is_estimate"]:
            label += " (ESTIMATE from CPU time)"
        rows.append(
            (
                label,
                f"{before['energy']['joules_per_sequence']:.3f} J",
                f"{after['energy']['joules_per_sequence']:.3f} J",
                "",
            )
        )
    return rows


def _memory(entry: dict[str, Any]) -> str:
    return f"+{_mb(entry['peak_increase_bytes'])} ({_mb(entry['peak_rss_bytes'])})"


def _latency(entry: dict[str, Any]) -> str:
    return f"{entry['median_ms']:.1f} ms (p10-p90 {entry['p10_ms']:.1f}-{entry['p90_ms']:.1f})"


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value / MB:.2f} MB"


def _times(ratio: float | None, suffix: str) -> str:
    return "" if ratio is None else f"{ratio * 100:.1f}% {suffix}"


def to_markdown(report: dict[str, Any]) -> str:
    """The whole report as markdown: header, table, protocol, energy note."""
    lines = [
        f"# slimformer report: {report['model']}",
        "",
        f"- task: {report['task']}; architecture: {report['architecture']}",
        f"- recipe: {', '.join(s['method'] for s in report['recipe']['stages'])}",
        "- stage times: "
        + ", ".join(f"{t['stage']} {t['seconds']:.1f} s" for t in report["stages"]),
        "",
        "| | before | after | change |",
        "|---|---|---|---|",
    ]
    lines += [line(row) for row in table_rows(report)]
    protocol = report["protocol"]
    lines += [
        "",
        f"Latency: median of {protocol['runs']} runs after {protocol['warmup']} warm-up runs, "
        f"{protocol['threads']} threads, torch {protocol['torch']}.",
    ]
    energy = (report["after"].get("measurement") or {}).get("energy")
    if energy:
        lines.append(f"Energy ({energy['method']}): {energy['detail']}")
    return "\n".join(lines) + "\n"
