"""The structured-minilm example on the real minilm-intent: recovery threshold, size, reload.

Slow (a pruning pass and a 5-epoch recovery fine-tune on 2 cores); run only
these with ``pytest -m integration``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import slimformer
from slimformer.pipeline import MeasureOptions

pytestmark = pytest.mark.integration

RECIPE = Path(__file__).resolve().parents[3] / "examples" / "structured-minilm.yaml"
UNPRUNED_ACCURACY = 188 / 193  # minilm-intent on the intent test split


def _encoder_params(slim) -> int:
    return sum(p.numel() for p in slim.model.bert.encoder.parameters())


def test_structured_minilm_recovers_and_reloads(user_cache, tmp_path):
    original = slimformer.load("minilm-intent", progress=False)
    report = slimformer.compress(
        "minilm-intent",
        RECIPE,
        out=tmp_path / "out",
        eval="intent",
        measure=MeasureOptions(enabled=False),
        progress=False,
    )
    accuracy = report["comparison"]["quality"]["after"]
    assert accuracy >= UNPRUNED_ACCURACY - 0.015
    again = slimformer.load(str(tmp_path / "out"), progress=False)
    assert _encoder_params(again) <= 0.75 * _encoder_params(original)
    sizes = {layer.sizes() for layer in again.adapter.layers()}
    assert {(s.num_heads, s.intermediate_size) for s in sizes} == {(8, 768)}
