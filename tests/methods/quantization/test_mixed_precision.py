"""Mixed precision: the greedy allocation under a budget, and the method end to end."""

from __future__ import annotations

import json

import pytest
import torch

import slimformer
from slimformer.errors import SlimformerError
from slimformer.methods.quantization.mixed_precision import LayerPlan, MixedPrecision, allocate


def _plans():
    # "a" is very sensitive, "c" hardly at all; all the same size.
    return [
        LayerPlan("a", 100, {3: 90.0, 4: 40.0, 8: 1.0}, 3),
        LayerPlan("b", 100, {3: 30.0, 4: 12.0, 8: 0.5}, 3),
        LayerPlan("c", 100, {3: 3.0, 4: 1.5, 8: 0.1}, 3),
    ]


def _average(plans):
    return sum(p.bits * p.weights for p in plans) / sum(p.weights for p in plans)


@pytest.mark.parametrize("budget", [3.0, 3.5, 4.0, 4.5, 5.5, 8.0])
def test_allocation_stays_within_budget(budget):
    plans = _plans()
    allocate(plans, [3, 4, 8], budget)
    assert _average(plans) <= budget + 1e-9


def test_the_most_sensitive_layer_gets_the_most_bits():
    plans = _plans()
    allocate(plans, [3, 4, 8], 5.0)
    bits = {p.name: p.bits for p in plans}
    assert bits["a"] >= bits["b"] >= bits["c"]
    assert bits["a"] == 8


def test_budget_outside_the_choices_is_refused():
    with pytest.raises(SlimformerError, match=r"average_bits 2\.5 is outside"):
        allocate(_plans(), [3, 4, 8], 2.5)


def test_mixed_precision_end_to_end(tiny_llama_dir, minilm_tokenizer, tmp_path):
    calib = slimformer.calibration_windows(minilm_tokenizer, "wiki", n=4, length=32)
    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    config = MixedPrecision(average_bits=5.0, choices=[4, 8], group_size=32)
    slimformer.quantize_(slim, config, calibration=calib, progress=False)
    allocation = slim.compression["bit_allocation"]
    sizes = {name: slim.model.get_submodule(name).out_features for name in allocation}
    ins = {name: slim.model.get_submodule(name).in_features for name in allocation}
    total = sum(sizes[n] * ins[n] for n in allocation)
    average = sum(bits * sizes[n] * ins[n] for n, bits in allocation.items()) / total
    assert average <= 5.0 and set(allocation.values()) <= {4, 8}
    assert 8 in allocation.values() and 4 in allocation.values()
    ids = calib[:2]
    with torch.no_grad():
        expected = slim.model(input_ids=ids).logits
    slimformer.save(slim, tmp_path / "mixed")
    again = slimformer.load(tmp_path / "mixed", runtime="eager")
    with torch.no_grad():
        assert torch.equal(again.model(input_ids=ids).logits, expected)
    saved = json.loads((tmp_path / "mixed" / "config.json").read_text())["slimformer"]
    bits = {name: entry["spec"]["bits"] for name, entry in saved["modules"].items()}
    assert bits == allocation
