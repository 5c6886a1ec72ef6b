"""ADMM re-solve of the kept weights: the best weights for a mask, not just a good guess.

Once a mask is chosen, the layer's best kept weights are those that minimise
the output error on the calibration inputs, ``tr((W - W0) H (W - W0)^T)``
with ``H = X^T X``, subject to ``W`` being zero off the mask. Wanda keeps
the dense weights unchanged; SparseGPT's OBS update only corrects each
column with the columns after it, so both leave error on the table
(benchmarks/pruning.py measures what re-solving gains in perplexity).

The constrained least-squares problem is solved by ADMM, as in Boža, "Fast
and Effective Weight Update for Pruned Large Language Models" (2024):
alternate an unconstrained ridge step ``W = (W0 H + rho (Z - U)) (H + rho
I)^-1``, a projection onto the mask ``Z = mask * (W + U)``, and a dual
update ``U += W - Z``. Inputs are first scaled to unit ``diag(H)`` so one
``rho`` suits every layer; ``(H + rho I)^-1`` is factored once per layer,
so each iteration is one matrix product. Over-relaxation (Boyd et al.,
"Distributed Optimization and Statistical Learning via ADMM", 2011, 3.4.3)
speeds convergence, so a few iterations from the method's own weights
suffice (the default 5; the benchmark rows use it).
"""

from __future__ import annotations

import torch

from slimformer.methods.hessian import prepare_hessian

#: Over-relaxation of the ADMM steps (1: plain ADMM; 1.5-1.8 is the usual range).
RELAXATION = 1.6


def admm_refine(
    dense: torch.Tensor,
    hessian: torch.Tensor,
    keep: torch.Tensor,
    start: torch.Tensor | None = None,
    *,
    iterations: int = 5,
    rho: float = 0.5,
    damp: float = 0.01,
) -> torch.Tensor:
    """Float32 weights, zero off ``keep``, closest to ``dense`` [out, in] on ``hessian``'s inputs.

    ``start`` is the pruning method's own result (default: ``dense`` masked).
    ``rho`` and ``damp`` are relative to a unit ``diag(H)``; ``damp`` pulls
    the solution towards ``dense`` where the calibration data says little.
    """
    w0, h = prepare_hessian(dense, hessian)
    scale = torch.diagonal(h).sqrt()
    h /= scale[:, None]
    h /= scale[None, :]
    h.diagonal().add_(damp)
    target = (w0 * scale) @ h
    h.diagonal().add_(rho)
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(h))
    del h
    mask = keep.to(torch.float32)
    z = (w0 if start is None else start.detach().to(torch.float32)) * mask * scale
    u = torch.zeros_like(z)
    for _ in range(iterations):
        w = (target + rho * (z - u)) @ inverse
        w = RELAXATION * w + (1 - RELAXATION) * z
        z = (w + u) * mask
        u += w - z
    return z / scale
