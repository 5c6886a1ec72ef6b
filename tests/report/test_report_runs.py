"""Saved results of many runs: the file round trip and how failed or missing runs read."""

from __future__ import annotations

import json

from slimformer.report.runs import (
    first_missing,
    load_runs,
    mean,
    measured_on,
    ok,
    ratio,
    save_runs,
    why_not,
)

MACHINE = {"cpu": "AMD EPYC", "threads": 2, "torch": "2.13.0+cpu", "date": "2026-11-22 07:12"}
RESULTS = {
    "dense": {"quality": {"value": 0.9}, "disk_bytes": 100},
    "broken": {"row": "broken", "error": "RuntimeError: out of memory"},
}


def test_saved_runs_load_back_as_machine_and_results(tmp_path):
    path = tmp_path / "bench.json"
    save_runs(path, MACHINE, RESULTS)
    assert load_runs(path) == (MACHINE, RESULTS)
    assert list(json.loads(path.read_text())) == ["machine", "rows"]


def test_a_run_is_ok_only_when_it_has_a_result_without_an_error():
    assert ok(RESULTS["dense"])
    assert not ok(RESULTS["broken"])
    assert not ok({})
    assert not ok(None)


def test_why_not_gives_the_error_or_says_not_run():
    assert why_not(RESULTS["broken"]) == "RuntimeError: out of memory"
    assert why_not(None) == "not run"
    assert why_not({}, default="-") == "-"


def test_first_missing_names_the_first_run_that_did_not_finish():
    assert first_missing(RESULTS, "dense") is None
    assert first_missing(RESULTS, "dense", "absent", "broken") == "not run: row `absent`: not run"
    assert (
        first_missing(RESULTS, "broken", "absent")
        == "not run: row `broken`: RuntimeError: out of memory"
    )


def test_ratio_is_none_without_both_values():
    assert ratio(50, 200) == 0.25
    assert ratio(None, 200) is None
    assert ratio(50, None) is None
    assert ratio(50, 0) is None


def test_mean_is_sum_over_count():
    values = [0.1, 0.2, 0.7]
    assert mean(values) == sum(values) / 3
    assert mean(iter([1.0, 2.0])) == 1.5


def test_measured_on_names_cpu_threads_torch_and_date():
    assert measured_on(MACHINE) == "AMD EPYC, 2 threads, torch 2.13.0+cpu, 2026-11-22 07:12"
