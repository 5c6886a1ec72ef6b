"""Pruning on single layers: exact counts, SparseGPT's error below magnitude's, Wanda's score."""

from __future__ import annotations

import pytest
import torch

from conftest import output_error, synthetic_layer
from slimformer.methods.pruning.masks import (
    keep_n_of_m,
    keep_per_row,
    keep_within_rows,
    pruned_count,
)
from slimformer.methods.pruning.replace import magnitude_keep
from slimformer.methods.pruning.settings import NMPattern
from slimformer.methods.pruning.sparsegpt_solver import sparsegpt_prune
from slimformer.methods.pruning.wanda import wanda_scores


def _assert_n_of_m(weight, nm):
    nonzero = (weight != 0).reshape(weight.shape[0], -1, nm.m).sum(dim=2)
    assert (nonzero == nm.n).all()


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.7])
def test_sparsegpt_reaches_the_exact_sparsity_with_lower_output_error_than_magnitude(sparsity):
    weight, x = synthetic_layer()
    result = sparsegpt_prune(weight, x.T @ x / x.shape[0], sparsity, block_size=32)
    zeros = int((result.weight == 0).sum())
    assert zeros == pruned_count(weight.numel(), sparsity)
    assert torch.equal(result.weight != 0, result.keep)
    magnitude = weight * magnitude_keep(weight, sparsity, None)
    assert int((magnitude == 0).sum()) == zeros
    assert output_error(x, weight, result.weight) < output_error(x, weight, magnitude)


@pytest.mark.parametrize(("n", "m"), [(2, 4), (4, 8), (1, 4)])
def test_sparsegpt_n_of_m_keeps_n_in_every_group_and_beats_magnitude(n, m):
    weight, x = synthetic_layer()
    nm = NMPattern(n, m)
    result = sparsegpt_prune(weight, x.T @ x / x.shape[0], nm.sparsity, nm, block_size=64)
    _assert_n_of_m(result.weight, nm)
    magnitude = weight * magnitude_keep(weight, nm.sparsity, nm)
    _assert_n_of_m(magnitude, nm)
    assert output_error(x, weight, result.weight) < output_error(x, weight, magnitude)


def test_stacked_layers_each_reach_their_own_sparsity():
    """q, k and v share one solve; each still loses exactly its share, even at odd sizes."""
    weight, x = synthetic_layer(out_features=50, in_features=96)
    result = sparsegpt_prune(weight, x.T @ x, 0.37, row_splits=[20, 30], block_size=40)
    for part in result.weight.split([20, 30]):
        assert int((part == 0).sum()) == pruned_count(part.numel(), 0.37)


def test_sparsegpt_handles_dead_inputs_and_refuses_uneven_blocks():
    from slimformer.errors import SlimformerError

    weight, x = synthetic_layer()
    x[:, 10:20] = 0.0
    result = sparsegpt_prune(weight, x.T @ x, 0.5)
    assert torch.isfinite(result.weight).all()
    assert (result.weight[:, 10:20] == 0).all()
    with pytest.raises(SlimformerError, match=r"block_size 30 .* multiple of 4"):
        sparsegpt_prune(weight, x.T @ x, 0.5, NMPattern(2, 4), block_size=30)


def test_wanda_score_and_mask_match_a_hand_computed_reference():
    weight, x = synthetic_layer(out_features=6, in_features=16, tokens=64)
    norms = x.square().sum(dim=0).sqrt()
    scores = wanda_scores(weight, norms)
    for i in range(weight.shape[0]):
        for j in range(weight.shape[1]):
            expected = (
                abs(weight[i, j].item()) * (sum(x[t, j].item() ** 2 for t in range(64))) ** 0.5
            )
            assert scores[i, j].item() == pytest.approx(expected, rel=1e-5)
    keep = keep_per_row(scores, 0.5)
    for i in range(weight.shape[0]):
        order = sorted(range(16), key=lambda j: scores[i, j].item())
        assert {j for j in range(16) if not keep[i, j]} == set(order[:8])


def test_n_of_m_mask_keeps_the_largest_of_each_group():
    score = torch.tensor([[4.0, 1.0, 3.0, 2.0, 0.5, 0.6, 0.7, 0.8]])
    keep = keep_n_of_m(score, NMPattern(2, 4))
    assert keep.tolist() == [[True, False, True, False, False, False, True, True]]


@pytest.mark.parametrize("pattern", [None, NMPattern(2, 4)])
def test_admm_refine_keeps_the_mask_and_lowers_sparsegpt_and_wanda_error(pattern):
    from slimformer.methods.pruning.admm import admm_refine

    weight, x = synthetic_layer()
    hessian = x.T @ x / x.shape[0]
    sparsity = 0.5 if pattern is None else pattern.sparsity
    sgpt = sparsegpt_prune(weight, hessian, sparsity, pattern, block_size=32)
    wanda_keep = keep_within_rows(wanda_scores(weight, x.square().sum(0).sqrt()), sparsity, pattern)
    for keep, start in ((sgpt.keep, sgpt.weight), (wanda_keep, weight * wanda_keep)):
        refined = admm_refine(weight, hessian, keep, start, iterations=20, damp=0.0)
        assert torch.equal(refined != 0, keep)  # same mask, nothing revived
        assert output_error(x, weight, refined) < 0.95 * output_error(x, weight, start)


def test_admm_refine_reaches_the_least_squares_optimum_of_a_fixed_mask():
    """Row by row, the kept weights solve H[K, K] w_K = H[K, :] w0 (no dampening)."""
    from slimformer.methods.pruning.admm import admm_refine

    weight, x = synthetic_layer(out_features=4, in_features=24, tokens=256)
    hessian = (x.T @ x / x.shape[0]).double()
    keep = keep_per_row(torch.rand(weight.shape, generator=torch.Generator().manual_seed(0)), 0.5)
    refined = admm_refine(weight, hessian.float(), keep, iterations=300, rho=0.5, damp=0.0)
    for row in range(weight.shape[0]):
        kept = keep[row]
        h_kk = hessian[kept][:, kept]
        expected = torch.linalg.solve(h_kk, hessian[kept] @ weight[row].double())
        assert torch.allclose(refined[row, kept].double(), expected, atol=1e-3, rtol=1e-3)


def test_admm_refine_with_a_full_mask_returns_the_dense_weights():
    from slimformer.methods.pruning.admm import admm_refine

    weight, x = synthetic_layer()
    keep = torch.ones_like(weight, dtype=torch.bool)
    refined = admm_refine(weight, x.T @ x, keep, iterations=5)
    assert torch.allclose(refined, weight, atol=1e-5)
