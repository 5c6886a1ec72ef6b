"""Finite-number guards: which tensors are checked, and what the errors name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimformer.calibration.stats import Collect, LinearStats
from slimformer.errors import SlimformerError
from slimformer.nn.finite import check_model_finite, model_tensors, nonfinite_tensors
from slimformer.nn.grid import MAX_SCALE, QuantScheme, quantize_weight
from slimformer.nn.int8_linear import quantize_per_channel


def test_counts_bad_values_and_skips_integer_tensors():
    tensors = {
        "ok": torch.ones(3),
        "nan": torch.tensor([1.0, float("nan"), float("nan")]),
        "inf": torch.tensor([float("-inf")], dtype=torch.float16),
        "codes": torch.zeros(4, dtype=torch.int8),
    }
    assert nonfinite_tensors(tensors.items()) == {"nan": 2, "inf": 1}


def test_model_check_names_the_tensor_and_counts_the_rest():
    model = nn.Sequential(*(nn.Linear(4, 4) for _ in range(5)))
    with torch.no_grad():
        for layer in model:
            layer.bias[0] = float("inf")
        model[0].weight[1, 2] = float("nan")
    with pytest.raises(SlimformerError, match=r"0\.weight \(1 NaN/inf\)") as caught:
        check_model_finite(model)
    message = str(caught.value)
    assert "and 3 more tensors" in message and "re-export it" in message
    assert "\n" not in message


def test_model_tensors_are_the_checkpoints_once():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[1].weight = model[0].weight  # tied: checked once
    model.register_buffer("steps", torch.zeros(1, dtype=torch.long))
    model.register_buffer("scratch", torch.full((1,), float("nan")), persistent=False)
    names = [name for name, _ in model_tensors(model)]
    assert names == ["steps", "0.weight", "0.bias", "1.bias"]
    check_model_finite(model)  # the NaN in a non-persistent buffer is not the checkpoint's


def test_finite_weights_give_finite_scales():
    weight = torch.randn(4, 64)
    weight[0, 0] = 3e38  # huge but finite: the range itself overflows float32
    weight[0, 1] = -3e38
    weight[1] = 0.0  # zero range
    for scheme in (QuantScheme(4, 32), QuantScheme(8, 0, symmetric=True)):
        scales = quantize_weight(weight, scheme).scales
        assert torch.isfinite(scales).all() and scales.max() <= MAX_SCALE
        assert (scales > 0).all()
    _codes, scale = quantize_per_channel(weight)
    assert torch.isfinite(scale).all() and (scale > 0).all()


def test_calibration_statistics_that_overflow_name_the_layer():
    collect = Collect(xtx=True, abs_mean=True)
    stats = LinearStats.empty("layers.3.mlp.down_proj", 4, collect, torch.device("cpu"))
    stats.update(torch.full((2, 4), 1e30))  # finite inputs whose square overflows
    with pytest.raises(SlimformerError, match=r"input to layers\.3\.mlp\.down_proj") as caught:
        stats.hessian()
    assert "X^T X" in str(caught.value) and "compute_dtype to float32" in str(caught.value)
