"""The report: measurements before and after, and the ratios users decide on.

Every number in it comes from a measurement taken in this run; the report
only arranges them. Estimates (energy without counters) say so.
"""

from __future__ import annotations

import platform
from typing import Any

import torch

import slimformer
from slimformer.model import SlimModel


def build_report(
    slim: SlimModel,
    recipe,
    before: dict[str, Any],
    after: dict[str, Any],
    timings: list[dict[str, Any]],
    measure,
) -> dict[str, Any]:
    """A JSON-ready report of one compression run."""
    return {
        "slimformer_version": slimformer.__version__,
        "model": slim.name,
        "task": slim.task,
        "architecture": slim.adapter.describe(),
        "recipe": recipe.to_dict(),
        "stages": timings,
        "protocol": {
            "threads": measure.threads,
            "runs": measure.runs,
            "warmup": measure.warmup,
            "shapes": [list(shape) for shape in measure.shapes],
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "before": _section(before),
        "after": _section(after),
        "comparison": compare(before, after),
    }


def _section(result: dict[str, Any]) -> dict[str, Any]:
    section: dict[str, Any] = {"runtime": result.get("runtime", "eager")}
    if "eval" in result:
        section["eval"] = _jsonable_eval(result["eval"])
    if "measurement" in result:
        section["measurement"] = result["measurement"].model_dump(mode="json")
    return section


def _jsonable_eval(ev: dict[str, Any]) -> dict[str, Any]:
    metrics = {
        key: value
        for key, value in ev["metrics"].items()
        if not isinstance(value, (list, dict, torch.Tensor))
    }
    out = {key: value for key, value in ev.items() if key != "metrics"}
    out["metrics"] = metrics
    if "predictions" in ev["metrics"]:
        out["predictions"] = ev["metrics"]["predictions"]
    return out


def compare(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Ratios and differences: compression, speed-up, quality change."""
    out: dict[str, Any] = {}
    if "eval" in before and "eval" in after:
        b, a = before["eval"], after["eval"]
        out["quality"] = {
            "metric": b["metric"],
            "before": b["value"],
            "after": a["value"],
            "change": a["value"] - b["value"],
            "higher_is_better": b["higher_is_better"],
        }
        if "predictions" in b["metrics"] and "predictions" in a["metrics"]:
            out["quality"]["changed_predictions"] = sum(
                x != y
                for x, y in zip(
                    b["metrics"]["predictions"], a["metrics"]["predictions"], strict=True
                )
            )
    if "measurement" in before and "measurement" in after:
        mb, ma = before["measurement"], after["measurement"]
        out["disk_ratio"] = _ratio(ma.size.disk_bytes, mb.size.disk_bytes)
        out["linear_weight_disk_ratio"] = _ratio(
            ma.size.linear_weight_bytes_on_disk, mb.size.linear_weight_bytes_on_disk
        )
        out["memory_ratio"] = _ratio(ma.size.weight_bytes_in_memory, mb.size.weight_bytes_in_memory)
        out["speedup"] = {
            f"{lb.batch}x{lb.seq_len}": _ratio(lb.median_ms, la.median_ms)
            for lb, la in zip(mb.latency, ma.latency, strict=True)
        }
        if mb.energy and ma.energy:
            out["energy_ratio"] = _ratio(ma.energy.joules_per_batch, mb.energy.joules_per_batch)
            out["energy_is_estimate"] = ma.energy.is_estimate
    return out


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator
