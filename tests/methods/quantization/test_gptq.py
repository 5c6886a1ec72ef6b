"""The GPTQ solver on single layers: lower output error than RTN, robust to bad Hessians."""

from __future__ import annotations

import pytest
import torch

from conftest import output_error, synthetic_layer
from slimformer.errors import SlimformerError
from slimformer.methods.quantization.gptq_solver import fit_grid, gptq_quantize
from slimformer.nn.grid import (
    QuantScheme,
    dequantize_codes,
    quantize_codes,
    quantize_weight,
)


@pytest.mark.parametrize(
    ("bits", "group_size", "act_order"),
    [(4, 32, False), (4, 32, True), (3, 64, False), (4, 0, False), (8, 64, True)],
)
def test_gptq_beats_rtn_on_layer_output_error(bits, group_size, act_order):
    weight, x = synthetic_layer()
    scheme = QuantScheme(bits, group_size)
    hessian = x.T @ x / x.shape[0]
    gptq = gptq_quantize(weight, hessian, scheme, act_order=act_order).weight
    rtn = quantize_weight(weight, scheme)
    assert gptq.codes.shape == weight.shape and gptq.codes.dtype == torch.uint8
    assert int(gptq.codes.max()) <= 2**bits - 1
    assert gptq.zeros.dtype == torch.uint8
    assert output_error(x, weight, gptq.dequantize()) < output_error(x, weight, rtn.dequantize())


@pytest.mark.parametrize("group_size", [32, 0])
def test_act_order_with_a_diagonal_hessian_is_exactly_rtn(group_size):
    """No correlation, no error to move: GPTQ reduces to RTN, in the layer's own layout.

    The diagonal is random, so activation order really permutes the columns; any
    slip in un-permuting codes or in the static group parameters would show.
    """
    weight, _ = synthetic_layer()
    diagonal = torch.rand(weight.shape[1], generator=torch.Generator().manual_seed(1)) + 0.5
    scheme = QuantScheme(4, group_size)
    gptq = gptq_quantize(
        weight, torch.diag(diagonal), scheme, act_order=True, fit_grids=False
    ).weight
    rtn = quantize_weight(weight, scheme)
    assert torch.equal(gptq.codes, rtn.codes)
    assert torch.equal(gptq.scales, rtn.scales) and torch.equal(gptq.zeros, rtn.zeros)


@pytest.mark.parametrize("act_order", [False, True])
def test_grids_fitted_to_the_hessian_lower_the_output_error(act_order):
    """At 3 bits, where a stretched grid costs most (at 4 bits with activation order
    the fitted grid is a heuristic that can lose by a hair on a layer like this one)."""
    weight, x = synthetic_layer()
    weight[::7, ::5] *= 6  # outlier weights that stretch min/max grids
    hessian = x.T @ x / x.shape[0]
    scheme = QuantScheme(3, 32)
    fitted = gptq_quantize(weight, hessian, scheme, act_order=act_order)
    plain = gptq_quantize(weight, hessian, scheme, act_order=act_order, fit_grids=False)
    assert not torch.equal(fitted.weight.scales, plain.weight.scales)
    assert output_error(x, weight, fitted.weight.dequantize()) < output_error(
        x, weight, plain.weight.dequantize()
    )


def test_fit_grid_never_costs_more_than_the_min_max_grid():
    weight, x = synthetic_layer()
    hessian = x.T @ x / x.shape[0]
    scheme = QuantScheme(3, 32)
    columns, h_group = weight[:, :32], hessian[:32, :32]
    fitted = fit_grid(columns, scheme, h_group)
    plain = fit_grid(columns, scheme, None)

    def cost(scale, zero):
        delta = dequantize_codes(quantize_codes(columns, scale, zero, 3), scale, zero) - columns
        return ((delta @ h_group) * delta).sum(dim=1)

    assert (cost(*fitted) <= cost(*plain)).all()


def test_dead_input_channels_are_handled():
    weight, x = synthetic_layer()
    x[:, 10:20] = 0.0  # channels never active: zero rows and columns in H
    hessian = x.T @ x / x.shape[0]
    result = gptq_quantize(weight, hessian, QuantScheme(4, 32))
    assert torch.isfinite(result.weight.dequantize()).all()


def test_rank_deficient_hessian_gets_more_dampening():
    weight, x = synthetic_layer(tokens=16)  # 16 tokens: H has rank 16 of 128
    hessian = x.T @ x / x.shape[0]
    result = gptq_quantize(weight, hessian, QuantScheme(4, 32), damp=1e-9)
    assert result.damp > 1e-9
    assert torch.isfinite(result.weight.dequantize()).all()


def test_nan_hessian_is_a_clear_error_naming_the_layer():
    weight, x = synthetic_layer()
    hessian = x.T @ x
    hessian[3, 3] = float("nan")
    with pytest.raises(SlimformerError, match=r"model\.layers\.0\.mlp\.up_proj"):
        gptq_quantize(weight, hessian, QuantScheme(4, 32), name="model.layers.0.mlp.up_proj")


def test_group_size_that_does_not_divide_is_refused():
    weight, x = synthetic_layer(in_features=96)
    with pytest.raises(SlimformerError, match="96"):
        gptq_quantize(weight, x.T @ x, QuantScheme(4, 64))


# -- the method, through the engine -----------------------------------------------


def _logits_error(model, reference, ids):
    with torch.no_grad():
        return (model(input_ids=ids).logits - reference).pow(2).mean().item()


def test_gptq_method_beats_rtn_on_a_whole_model(tiny_llama_dir, minilm_tokenizer):
    import slimformer
    from slimformer.methods.quantization.gptq import GPTQ
    from slimformer.methods.quantization.rtn import RTN

    calib = slimformer.calibration_windows(minilm_tokenizer, "wiki", n=8, length=64)
    ids = slimformer.calibration_windows(minilm_tokenizer, "wiki", split="test", n=2, length=64)
    errors = {}
    for name, config in {
        "gptq": GPTQ(bits=3, group_size=32),
        "rtn": RTN(bits=3, group_size=32),
    }.items():
        slim = slimformer.load(tiny_llama_dir, runtime="eager")
        with torch.no_grad():
            reference = slim.model(input_ids=ids).logits
        slimformer.quantize_(slim, config, calibration=calib, progress=False)
        errors[name] = _logits_error(slim.model, reference, ids)
    assert errors["gptq"] < errors["rtn"]


def test_gptq_recipe_runs_through_compress(tiny_bert_cls_dir, tiny_cls_jsonl, tmp_path):
    import json

    import slimformer
    from slimformer.pipeline import MeasureOptions

    recipe = {
        "stages": [
            {
                "method": "gptq",
                "bits": 4,
                "group_size": 32,
                "calibration": {"dataset": str(tiny_cls_jsonl), "samples": 4, "length": 16},
            }
        ]
    }
    report = slimformer.compress(
        tiny_bert_cls_dir,
        recipe,
        tmp_path / "out",
        eval=tiny_cls_jsonl,
        measure=MeasureOptions(enabled=False),
        runtime="eager",
        progress=False,
    )
    assert report["comparison"]["quality"]["metric"] == "accuracy"
    saved = json.loads((tmp_path / "out" / "config.json").read_text())["slimformer"]
    assert saved["quant_method"] == "weight_only_linear"
    assert saved["methods"][0]["calibration"]["samples"] == 4


def test_impossible_group_size_leaves_the_model_untouched(tiny_llama_dir, minilm_tokenizer):
    import slimformer
    from slimformer.methods.quantization.gptq import GPTQ

    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    with pytest.raises(SlimformerError, match="group"):
        slimformer.quantize_(slim, GPTQ(group_size=48), calibration=torch.ones(2, 8).long())
    assert not any("WeightOnly" in type(m).__name__ for m in slim.model.modules())


def test_selected_layers_outside_the_blocks_are_rounded_not_left_float(
    tiny_bert_cls_dir, minilm_tokenizer
):
    import slimformer
    from slimformer.methods.quantization.gptq import GPTQ
    from slimformer.nn import WeightOnlyLinear

    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    calib = slimformer.calibration_windows(minilm_tokenizer, "wiki", n=2, length=16)
    config = GPTQ(bits=8, group_size=32, parts=["attention", "mlp", "head"])
    slimformer.quantize_(slim, config, calibration=calib, progress=False)
    assert isinstance(slim.model.classifier, WeightOnlyLinear)
    assert isinstance(slim.model.bert.pooler.dense, WeightOnlyLinear)


def test_layers_sharing_an_input_solve_as_one_stacked_matrix():
    """Rows are independent given H: stacking q/k/v changes nothing but the speed."""
    weight, x = synthetic_layer(out_features=96)
    hessian = x.T @ x / x.shape[0]
    scheme = QuantScheme(4, 32)
    together = gptq_quantize(weight, hessian, scheme).weight.split([32, 64])
    alone = [
        gptq_quantize(weight[:32], hessian, scheme),
        gptq_quantize(weight[32:], hessian, scheme),
    ]
    for joint, single in zip(together, alone, strict=True):
        same = (joint.codes == single.weight.codes).float().mean().item()
        assert same > 0.999
        assert torch.allclose(joint.dequantize(), single.weight.dequantize(), atol=1e-2)
