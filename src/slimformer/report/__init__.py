"""Reports: JSON for machines, markdown for people, a rich table for the terminal.

One run (a compression): :func:`build_report`, :func:`to_markdown`,
:func:`write_reports`. Many runs (benchmarks, comparisons): saved results
(:mod:`~slimformer.report.runs`), markdown tables (:mod:`~slimformer.report.tables`),
target lines (:mod:`~slimformer.report.targets`) and figures
(:mod:`~slimformer.report.figures`, drawn only when matplotlib is installed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slimformer.report.build import build_report, compare
from slimformer.report.figures import Figure, save_figures
from slimformer.report.markdown import table_rows, to_markdown
from slimformer.report.runs import load_runs, save_runs


def write_reports(report: dict[str, Any], folder: str | Path) -> None:
    folder = Path(folder)
    (folder / "report.json").write_text(json.dumps(report, indent=2))
    (folder / "report.md").write_text(to_markdown(report))


def print_table(report: dict[str, Any]) -> None:
    """The before / after table in the terminal."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report['model']}: {report['recipe']['name']}")
    for column in ("", "before", "after", "change"):
        table.add_column(column)
    for row in table_rows(report):
        table.add_row(*row)
    Console().print(table)


__all__ = [
    "Figure",
    "build_report",
    "compare",
    "load_runs",
    "print_table",
    "save_figures",
    "save_runs",
    "table_rows",
    "to_markdown",
    "write_reports",
]
