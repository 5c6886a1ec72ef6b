"""Target lines: the verdict is computed, and a target that cannot be judged says why."""

from __future__ import annotations

from slimformer.report.targets import checklist, target, unjudged, verdict


def test_verdict_is_bold_met_or_not_met():
    assert verdict(True) == "**met**"
    assert verdict(False) == "**NOT MET**"


def test_target_line_carries_claim_verdict_and_evidence():
    share = 0.962
    line = target("2-layer student", "accuracy >= 95% of the teacher", share >= 0.95, "96.2%")
    assert line == "- 2-layer student: accuracy >= 95% of the teacher: **met** (96.2%)"
    missed = target("2-layer student", ">= 4x faster", 3.1 >= 4, "3.10x")
    assert missed == "- 2-layer student: >= 4x faster: **NOT MET** (3.10x)"


def test_unjudged_target_says_why_without_a_verdict():
    assert unjudged("headline", "not run: row `cls-headline`: not run") == (
        "- headline: not run: row `cls-headline`: not run"
    )


def test_checklist_ticks_the_targets_met():
    assert checklist([("lost at most 1 example", True), ("2x faster", False)]) == [
        "- [x] lost at most 1 example",
        "- [ ] 2x faster",
    ]
