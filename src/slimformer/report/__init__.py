"""Reports: JSON for machines, markdown for people, a rich table for the terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slimformer.report.build import build_report, compare
from slimformer.report.markdown import table_rows, to_markdown


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


__all__ = ["build_report", "compare", "print_table", "table_rows", "to_markdown", "write_reports"]
