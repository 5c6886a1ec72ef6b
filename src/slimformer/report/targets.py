"""Target lines: a claim read off measured results, with its verdict and the figures behind it.

A target is never typed in as met: the report computes the verdict from the
results, and a target whose runs are missing says why instead of a figure.
"""

from __future__ import annotations

from collections.abc import Iterable


def verdict(passed: bool) -> str:
    """``**met**`` or ``**NOT MET**``, bold so a missed target stands out."""
    return "**met**" if passed else "**NOT MET**"


def target(what: str, claim: str, passed: bool, evidence: str) -> str:
    """``- what: claim: **met** (evidence)``: one target, judged, with its figures."""
    return f"- {what}: {claim}: {verdict(passed)} ({evidence})"


def unjudged(what: str, why: str) -> str:
    """``- what: why``: a target that cannot be judged (a run missing, nothing timed)."""
    return f"- {what}: {why}"


def checklist(targets: Iterable[tuple[str, bool]]) -> list[str]:
    """Targets as a markdown checklist: ``- [x] text`` when met, ``- [ ] text`` when not."""
    return [f"- [{'x' if passed else ' '}] {text}" for text, passed in targets]
