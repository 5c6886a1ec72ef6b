"""Results of many runs, kept as one dict a run under its name, with the machine they ran on.

A run's result is a dict of measurements, or ``{"error": ...}`` when it
failed; a name missing from the results did not run. Benchmarks save their
rows in this shape, and every multi-run report reads it through these
helpers, so a failed or missing run reads "not run" the same way everywhere
and a report can be written again from the saved file without rerunning.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: A run's measurements (or its error), keyed by the run's name.
Results = dict[str, dict[str, Any]]


def save_runs(path: str | Path, machine: Mapping[str, Any], results: Results) -> None:
    """Write ``{"machine": ..., "rows": ...}``: what :func:`load_runs` reads back."""
    Path(path).write_text(json.dumps({"machine": machine, "rows": results}, indent=1))


def load_runs(path: str | Path) -> tuple[dict[str, Any], Results]:
    """The machine and the results a :func:`save_runs` file holds."""
    saved = json.loads(Path(path).read_text())
    return saved["machine"], saved["rows"]


def ok(result: Mapping[str, Any] | None) -> bool:
    """Whether a run finished: it has a result and the result is not an error."""
    return bool(result) and "error" not in result


def why_not(result: Mapping[str, Any] | None, default: str = "not run") -> str:
    """A failed run's error, or ``default`` when it has no result at all."""
    return (result or {}).get("error", default)


def first_missing(results: Mapping[str, Any], *names: str) -> str | None:
    """Why runs cannot be compared: the first of ``names`` that did not finish, and its error."""
    for name in names:
        result = results.get(name)
        if not ok(result):
            return f"not run: row `{name}`: {why_not(result)}"
    return None


def ratio(value: float | None, base: float | None) -> float | None:
    """``value / base``, or None when either is missing or the base is zero."""
    return None if not base or value is None else value / base


def mean(values: Iterable[float]) -> float:
    """The plain mean (sum over count), as the reports have always computed it."""
    values = list(values)
    return sum(values) / len(values)


def measured_on(machine: Mapping[str, Any]) -> str:
    """The machine line a reader needs to compare figures: CPU, threads, torch, date."""
    return (
        f"{machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}, "
        f"{machine['date']}"
    )
