"""The benchmark reports in benchmarks/results are what their report code writes from the JSON.

Rendering runs nothing: each family benchmark's ``write_report`` reads the
saved results (benchmarks/results/<name>.json) and must give back the
committed markdown byte for byte, so wording changes in the report code and
the shared ``slimformer.report`` pieces are checked against real results.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
RESULTS = BENCHMARKS / "results"


@pytest.fixture()
def benchmarks_on_path(monkeypatch):
    """The benchmark scripts import their siblings by name, as when run from their folder."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))


@pytest.mark.parametrize("name", ["quantization", "pruning", "distillation"])
def test_family_report_renders_from_saved_results(name, tmp_path, benchmarks_on_path):
    pytest.importorskip("matplotlib")  # the committed reports link their figures
    rows = importlib.import_module(name).ROWS
    write_report = importlib.import_module(f"{name}_report").write_report
    from slimformer.report.runs import load_runs

    machine, results = load_runs(RESULTS / f"{name}.json")
    write_report([rows[row] for row in results], results, machine, tmp_path)
    assert (tmp_path / f"{name}.md").read_text() == (RESULTS / f"{name}.md").read_text()
    assert (tmp_path / f"{name}.json").read_bytes() == (RESULTS / f"{name}.json").read_bytes()


def test_int8_dynamic_report_renders_from_saved_results(benchmarks_on_path):
    int8_dynamic = importlib.import_module("int8_dynamic")
    saved = json.loads((RESULTS / "int8_dynamic.json").read_text())
    text = int8_dynamic.markdown(saved["rows"], saved["machine"])
    assert text == (RESULTS / "int8_dynamic.md").read_text()


def test_distillation_rows_names_rows_the_benchmark_defines(benchmarks_on_path):
    """The report judges targets by the shared names: each must be a row the benchmark runs."""
    shared = importlib.import_module("distillation_rows")
    rows = importlib.import_module("distillation").ROWS
    names = [
        *shared.TEACHER.values(),
        shared.D3_EXAMPLE_ROW,
        shared.D2_EXAMPLE_ROW,
        shared.HEADLINE_ROW,
        shared.LM_UNTRAINED,
        shared.LM_DISTILLED,
        *shared.D3_RIVALS,
    ]
    seeds = [
        shared.seed_row_name(n, s)
        for n in (shared.D3_EXAMPLE_ROW, *shared.D3_RIVALS)
        for s in shared.D3_SEEDS
    ]
    assert [n for n in [*names, *seeds] if n not in rows] == []
