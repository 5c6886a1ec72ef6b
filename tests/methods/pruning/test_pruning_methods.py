"""Pruning methods on a whole tiny model: exact sparsity per layer, ordering, allocation."""

from __future__ import annotations

import pytest
import torch

import slimformer
from slimformer.errors import SlimformerError
from slimformer.methods.pruning.masks import pruned_count
from slimformer.nn import SparseLinear, compressed_modules


@pytest.fixture(scope="module")
def windows(minilm_tokenizer):
    calib = slimformer.calibration_windows(minilm_tokenizer, "wiki", n=8, length=64)
    test = slimformer.calibration_windows(minilm_tokenizer, "wiki", split="test", n=2, length=64)
    return calib, test


def _pruned(tiny_llama_dir, config, calib):
    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    slimformer.prune_(slim, config, calibration=calib, progress=False)
    return slim


def _sparse_layers(slim) -> dict[str, torch.Tensor]:
    return {
        name: module.dense_weight()
        for name, module in compressed_modules(slim.model).items()
        if isinstance(module, SparseLinear)
    }


@pytest.mark.parametrize(
    "config",
    [
        slimformer.Magnitude(sparsity=0.5),
        slimformer.Wanda(sparsity=0.6),
        slimformer.SparseGPT(sparsity=0.3),
    ],
    ids=["magnitude", "wanda", "sparsegpt"],
)
def test_every_selected_layer_reaches_the_exact_sparsity(tiny_llama_dir, windows, config):
    slim = _pruned(tiny_llama_dir, config, windows[0])
    layers = _sparse_layers(slim)
    # 2 blocks x (q, k, v, o, gate, up, down); the tied embedding and the head stay dense
    assert len(layers) == 14
    assert type(slim.model.lm_head) is torch.nn.Linear
    for weight in layers.values():
        if config.method == "wanda":  # Wanda compares within rows: every row at the target
            per_row = (weight == 0).sum(dim=1)
            assert (per_row == pruned_count(weight.shape[1], 0.6)).all()
        else:
            assert int((weight == 0).sum()) == pruned_count(weight.numel(), config.target())


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("pattern", ["2:4", "4:8"])
def test_n_of_m_holds_in_every_group(tiny_llama_dir, windows, method, pattern):
    from slimformer.methods.catalog import make_config

    slim = _pruned(tiny_llama_dir, make_config(method, {"pattern": pattern}), windows[0])
    n, m = (int(p) for p in pattern.split(":"))
    for weight in _sparse_layers(slim).values():
        groups = (weight != 0).reshape(weight.shape[0], -1, m).sum(dim=2)
        assert (groups == n).all()


def test_sparsegpt_beats_magnitude_on_the_whole_model(tiny_llama_dir, windows):
    calib, test = windows
    reference = slimformer.load(tiny_llama_dir, runtime="eager")
    with torch.no_grad():
        expected = reference.model(input_ids=test).logits
    errors = {}
    for config in (slimformer.Magnitude(), slimformer.SparseGPT()):
        slim = _pruned(tiny_llama_dir, config, calib)
        with torch.no_grad():
            errors[config.method] = (slim.model(input_ids=test).logits - expected).pow(2).mean()
    assert errors["sparsegpt"] < errors["magnitude"]


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_admm_refine_lowers_the_whole_model_error_and_keeps_the_sparsity(
    tiny_llama_dir, windows, method
):
    from slimformer.methods.catalog import make_config

    calib, test = windows
    reference = slimformer.load(tiny_llama_dir, runtime="eager")
    with torch.no_grad():
        expected = reference.model(input_ids=test).logits
    errors = {}
    for refine in ("none", "admm"):
        slim = _pruned(tiny_llama_dir, make_config(method, {"refine": refine}), calib)
        for weight in _sparse_layers(slim).values():
            assert int((weight == 0).sum()) == pruned_count(weight.numel(), 0.5)
        with torch.no_grad():
            errors[refine] = (slim.model(input_ids=test).logits - expected).pow(2).mean()
    assert errors["admm"] < errors["none"]


def test_global_magnitude_prunes_the_exact_total_with_one_threshold(tiny_llama_dir):
    slim = _pruned(tiny_llama_dir, slimformer.Magnitude(sparsity=0.4, scope="global"), None)
    dense = slimformer.load(tiny_llama_dir, runtime="eager")
    layers = _sparse_layers(slim)
    total = sum(w.numel() for w in layers.values())
    assert sum(int((w == 0).sum()) for w in layers.values()) == pruned_count(total, 0.4)
    shares = {(w == 0).float().mean().item() for w in layers.values()}
    assert len(shares) > 1  # one threshold: layers lose different shares
    kept_min = min(w[w != 0].abs().min() for w in layers.values())
    pruned_max = max(
        dense.model.get_submodule(name).weight[w == 0].abs().max() for name, w in layers.items()
    )
    assert pruned_max <= kept_min


def test_owl_varies_block_sparsity_around_the_target(tiny_llama_dir, windows):
    config = slimformer.Wanda(sparsity=0.5, allocation="owl", owl_lambda=0.1)
    slim = _pruned(tiny_llama_dir, config, windows[0])
    per_block: dict[int, list[torch.Tensor]] = {}
    for name, weight in _sparse_layers(slim).items():
        per_block.setdefault(int(name.split(".")[2]), []).append(weight)
    shares = {
        block: sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)
        for block, ws in per_block.items()
    }
    assert abs(shares[0] - shares[1]) == pytest.approx(0.2, abs=0.01)
    assert sum(shares.values()) / 2 == pytest.approx(0.5, abs=0.01)


def test_include_exclude_choose_the_layers(tiny_llama_dir):
    config = slimformer.Magnitude(include=["*.mlp.*"], exclude=["*.down_proj"])
    slim = _pruned(tiny_llama_dir, config, None)
    names = set(_sparse_layers(slim))
    assert names == {f"model.layers.{i}.mlp.{p}_proj" for i in (0, 1) for p in ("gate", "up")}


def test_pattern_that_does_not_divide_a_layer_leaves_the_model_untouched(tiny_llama_dir):
    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    with pytest.raises(SlimformerError, match=r"pattern 3:5 .* 64 inputs") as info:
        slimformer.prune_(
            slim, slimformer.Wanda(pattern="3:5"), calibration=torch.ones(2, 8).long()
        )
    assert "\n" not in str(info.value)
    assert not compressed_modules(slim.model)


def test_prune_refuses_a_quantization_config(tiny_llama_dir):
    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    with pytest.raises(SlimformerError, match="rtn is a quantization method, not pruning"):
        slimformer.prune_(slim, slimformer.RTN())
