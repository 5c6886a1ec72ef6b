"""Markdown tables of many runs: the header, the cells, and the line of a run that failed.

Every multi-run report writes its tables through these, so a missing value,
a speed-up and a failed run look the same in every report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from slimformer.report.runs import why_not


def header(columns: Iterable[str]) -> list[str]:
    """A table's first two lines: the column names and the separator."""
    columns = list(columns)
    return [line(columns), "|" + "---|" * len(columns)]


def line(cells: Iterable[Any]) -> str:
    """One table row: ``| a | b | c |``."""
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def table(columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    """A whole table: header, separator, one line a row."""
    return [*header(columns), *(line(row) for row in rows)]


def failed(label: str, result: Mapping[str, Any] | None, columns: int) -> str:
    """The row of a run that did not finish: its label, its error, ``columns`` empty cells."""
    return f"| {label} | could not run: {why_not(result)} |" + " |" * columns


def fmt(value: Any, spec: str) -> str:
    """``value`` formatted with ``spec``, or ``-`` when it was not measured."""
    return "-" if value is None else format(value, spec)


def speedup(base: float | None, value: float | None) -> str:
    """How many times faster ``value`` is than ``base`` (times: lower is faster), or ``-``."""
    return "-" if not base or not value else f"{base / value:.2f}x"


def identical(flag: bool | None) -> str:
    """A reload check's outcome: ``yes``, ``NO`` (loud: it is a bug), or ``-`` when not checked."""
    return {True: "yes", False: "NO", None: "-"}[flag]
