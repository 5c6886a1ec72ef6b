"""The GPTQ solver for one linear layer: quantize columns in order, fix the rest.

GPTQ (Frantar et al., 2022) quantizes a weight matrix one input column at a
time and, after each column, moves that column's rounding error onto the
columns not yet quantized, weighted by the inverse Hessian of the layer's
inputs (H = X^T X). The result minimises the layer's output error on the
calibration data, not the weight error as round-to-nearest does.

Details that matter for quality and robustness:

- Lazy block updates: errors are applied inside a block of columns
  immediately and to the rest of the matrix once per block.
- Dampening and dead inputs: see :mod:`slimformer.methods.hessian`, which
  SparseGPT shares.
- Groups: without reordering, each group's scale and zero point are computed
  from the columns as they are when the group starts (already corrected by
  earlier errors). With activation ordering the columns are processed by
  decreasing Hessian diagonal, so groups are computed up front from the
  original columns ("static groups") and every column keeps its own group's
  parameters: the saved layout is the plain, unpermuted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slimformer.errors import SlimformerError
from slimformer.methods.hessian import inverse_cholesky, prepare_hessian
from slimformer.nn.grid import (
    QuantizedWeight,
    QuantScheme,
    dequantize_codes,
    group_params,
    quantize_codes,
)


@dataclass
class GPTQResult:
    weight: QuantizedWeight
    damp: float
    loss: float


def gptq_quantize(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    scheme: QuantScheme,
    *,
    damp: float = 0.01,
    block_size: int = 128,
    act_order: bool = False,
    max_damp: float = 10.0,
    fit_grids: bool = True,
    name: str = "layer",
) -> GPTQResult:
    """Quantize ``weight`` [out, in] given the input Hessian [in, in].

    ``fit_grids`` fits each group's grid to the Hessian (see :func:`fit_grid`)
    instead of spanning its min and max.
    """
    scheme.validate(weight.shape[1], layer=name)
    w, h = prepare_hessian(weight, hessian)
    group = scheme.group_size or w.shape[1]
    perm = torch.argsort(torch.diag(h), descending=True) if act_order else None
    # One grid per row (no groups) is the same fitted up front as at column 0.
    grid_h = h if fit_grids else None
    static = _static_groups(w, scheme, group, grid_h) if act_order or group >= w.shape[1] else None
    if perm is not None:
        w, h = w[:, perm], h[perm][:, perm]
    h_inv, used_damp = inverse_cholesky(h, damp, max_damp, name)
    # Groups fitted as the solve reaches them need blocks of exactly one group (see _solve).
    block = block_size if static is not None else group
    codes, scales, zeros, loss = _solve(w, h_inv, scheme, group, block, perm, static, grid_h)
    if perm is not None:
        codes = codes[:, torch.argsort(perm)]
    if not (torch.isfinite(scales).all() and torch.isfinite(zeros.float()).all()):
        raise SlimformerError(
            f"GPTQ produced non-finite values in {name}",
            "raise `damp`, or exclude this layer with `exclude`",
        )
    result = QuantizedWeight(
        codes=codes, scales=scales, zeros=zeros.round().to(torch.uint8), scheme=scheme
    )
    return GPTQResult(weight=result, damp=used_damp, loss=loss)


#: Range ratios tried by the Hessian-aware grid fit (1.0, no clipping, comes first).
CLIP_RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8)


def _static_groups(
    w: torch.Tensor, scheme: QuantScheme, group: int, h: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scales and zeros ``[rows, n_groups]`` from the original (unpermuted) columns.

    All groups are fitted at once (``h``: see :func:`fit_grid`): each group is
    one row of ``[rows * n_groups, group]``, weighted by its diagonal block of H.
    """
    rows, cols = w.shape
    n_groups = cols // group
    blocks = None
    if h is not None:
        starts = range(0, cols, group)
        blocks = torch.stack([h[s : s + group, s : s + group] for s in starts])
    scale, zero = fit_grid(w.reshape(rows * n_groups, group), scheme, blocks)
    return scale.reshape(rows, n_groups), zero.reshape(rows, n_groups)


def fit_grid(
    columns: torch.Tensor, scheme: QuantScheme, h_group: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's scale and zero for a group of ``columns`` ``[rows, g]``.

    ``h_group`` is the group's ``[g, g]`` block of the Hessian, or ``[n, g, g]``
    blocks when the rows of ``columns`` cycle through ``n`` groups (row ``r``
    belongs to group ``r % n``).

    Without ``h_group`` the grid spans the row's min and max. With it, each
    row keeps the range ratio of :data:`CLIP_RATIOS` whose rounding error
    ``Δ H_gg Δᵀ`` (the output error it causes on the calibration inputs) is
    lowest: one outlier weight no longer coarsens the grid for the other 63,
    and unlike a plain weight-MSE clip search, it only clips where the
    inputs say the outlier matters less than the rest.
    """
    best_scale, best_zero = group_params(columns, scheme)
    if h_group is None:
        return best_scale, best_zero
    best_error = _output_error(columns, best_scale, best_zero, scheme, h_group)
    for ratio in CLIP_RATIOS[1:]:
        scale, zero = group_params(columns, scheme, ratio)
        error = _output_error(columns, scale, zero, scheme, h_group)
        better = error < best_error
        best_scale = torch.where(better, scale, best_scale)
        best_zero = torch.where(better, zero, best_zero)
        best_error = torch.where(better, error, best_error)
    return best_scale, best_zero


def _output_error(columns, scale, zero, scheme, h_group) -> torch.Tensor:
    codes = quantize_codes(columns, scale, zero, scheme.bits)
    delta = dequantize_codes(codes, scale, zero) - columns
    if h_group.dim() == 2:
        return ((delta @ h_group) * delta).sum(dim=1)
    per_group = delta.reshape(-1, h_group.shape[0], delta.shape[1]).transpose(0, 1)
    weighted = torch.bmm(per_group, h_group).transpose(0, 1).reshape(delta.shape)
    return (weighted * delta).sum(dim=1)


def _solve(w, h_inv, scheme, group, block, perm, static, grid_h):
    """Codes, scales, zeros and loss; ``w`` and ``h_inv`` are in processing order.

    The column loop is the solver's cost (one Python iteration per input
    column), so it works on the transposed block (each column a contiguous
    row), keeps per-column scales ready in processing order, and folds the
    division by the inverse-Hessian diagonal into the rows of ``h_inv`` once
    per block, leaving a handful of tensor operations per column.
    """
    rows, cols = w.shape
    n_groups = -(-cols // group)
    if static is None:  # filled group by group as the solve reaches each one
        scales = torch.zeros((rows, n_groups), dtype=torch.float32, device=w.device)
        zeros = torch.zeros_like(scales)
    else:
        scales, zeros = static
        order = (perm if perm is not None else torch.arange(cols, device=w.device)) // group
        column_scales = scales[:, order].T.contiguous()
        column_zeros = zeros[:, order].T.contiguous()
    codes = torch.zeros((cols, rows), dtype=torch.uint8, device=w.device)
    loss = torch.zeros((), dtype=torch.float64, device=w.device)
    for start in range(0, cols, block):
        end = min(start + block, cols)
        if static is None:
            column_scales, column_zeros = _dynamic_groups(
                w, scheme, group, start, end, scales, zeros, grid_h
            )
            offset = start
        else:
            offset = 0
        diag = torch.diagonal(h_inv[start:end, start:end]).clone()
        h_rows = h_inv[start:end] / diag[:, None]
        q_block, err_block = _solve_block(
            w[:, start:end].T.contiguous(),
            h_rows[:, start:end],
            column_scales[start - offset : end - offset],
            column_zeros[start - offset : end - offset],
            scheme.maxq,
        )
        codes[start:end] = q_block.to(torch.uint8)
        loss += (err_block / diag[:, None]).square().sum() / 2
        w[:, end:] -= err_block.T @ h_rows[:, end:]
    return codes.T.contiguous(), scales, zeros, float(loss)


def _dynamic_groups(w, scheme, group, start, end, scales, zeros, grid_h):
    """Without reordering: a group's grid fitted from its columns as they are when it starts.

    The block is exactly one group, so its columns already carry every earlier
    column's error (lazy block updates are exact), as in the reference GPTQ.
    """
    h_group = None if grid_h is None else grid_h[start:end, start:end]
    scale, zero = fit_grid(w[:, start:end], scheme, h_group)
    scales[:, start // group], zeros[:, start // group] = scale, zero
    width = end - start
    return scale.expand(width, -1), zero.expand(width, -1)


def _solve_block(w_t, h_rows, column_scales, column_zeros, maxq):
    """Quantize the columns of one block in order (``w_t`` is ``[width, rows]``, updated).

    Returns the codes (as floats) and the raw rounding errors, both ``[width, rows]``;
    ``h_rows`` are the block's rows of H^-1 divided by their diagonal entry.
    """
    q_block = torch.empty_like(w_t)
    err_block = torch.empty_like(w_t)
    # Row views made once per block: indexing in the loop would cost as much as the math.
    views = zip(
        w_t.unbind(0),
        column_scales.unbind(0),
        column_zeros.unbind(0),
        q_block.unbind(0),
        err_block.unbind(0),
        h_rows.unbind(0),
        strict=True,
    )
    for i, (column, scale, zero, q_out, err_out, h_row) in enumerate(views):
        q = torch.div(column, scale, out=q_out).round_().add_(zero).clamp_(0, maxq)
        err = torch.sub(column, (q - zero).mul_(scale), out=err_out)
        w_t[i:].addr_(h_row[i:], err, alpha=-1)
    return q_block, err_block
