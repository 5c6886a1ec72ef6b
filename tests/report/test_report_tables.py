"""Markdown tables of many runs: header, rows, cells, and the row of a failed run."""

from __future__ import annotations

import pytest

from slimformer.report.tables import failed, fmt, header, identical, line, speedup, table


def test_header_has_one_separator_cell_per_column():
    assert header(["method", "accuracy", "x dense"]) == [
        "| method | accuracy | x dense |",
        "|---|---|---|",
    ]


def test_table_is_header_then_one_line_per_row():
    assert table(("a", "b"), [(1, "x"), (2.5, None)]) == [
        "| a | b |",
        "|---|---|",
        "| 1 | x |",
        "| 2.5 | None |",
    ]
    assert line(iter(["only"])) == "| only |"


def test_failed_row_keeps_the_table_width_and_says_why():
    columns = ("method", "accuracy", "disk MB", "reload identical")
    row = failed("GPTQ W3", {"error": "ValueError: bad"}, len(columns) - 2)
    assert row == "| GPTQ W3 | could not run: ValueError: bad | | |"
    assert row.count("|") == len(columns) + 1
    assert failed("RTN", None, 1) == "| RTN | could not run: not run | |"


@pytest.mark.parametrize(
    ("value", "spec", "shown"), [(None, ".2f", "-"), (1.234, ".2f", "1.23"), (0, ".0f", "0")]
)
def test_fmt_shows_a_dash_for_what_was_not_measured(value, spec, shown):
    assert fmt(value, spec) == shown


def test_speedup_is_base_over_value_or_a_dash():
    assert speedup(300.0, 100.0) == "3.00x"
    assert speedup(100.0, 400.0) == "0.25x"
    assert speedup(None, 100.0) == "-"
    assert speedup(100.0, None) == "-"
    assert speedup(100.0, 0.0) == "-"


def test_identical_is_loud_when_a_reload_differs():
    assert [identical(flag) for flag in (True, False, None)] == ["yes", "NO", "-"]
