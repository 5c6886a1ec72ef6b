"""The GPTQ solver for one linear layer: quantize columns in order, fix the rest.

GPTQ (Frantar et al., 2022) quantizes a weight matrix one input column at a
time and, after each column, moves that column's rounding error onto the
columns not yet quantized, weighted by the inverse Hessian of the layer's
inputs (H = X^T X). The result minimises the layer's output error on the
calibration data, not the weight error as round-to-nearest does.

Details that matter for quality and robustness:

- Lazy block updates: errors are applied inside a block of columns
  immediately and to the rest of the matrix once per block.
- Dampening: a fraction of the mean Hessian diagonal is added to it; when the
  Cholesky factorisation still fails (a singular Hessian), dampening grows
  tenfold up to ``max_damp`` and then a clear error names the layer.
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
from slimformer.methods.quantization.grid import (
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
    name: str = "layer",
) -> GPTQResult:
    """Quantize ``weight`` [out, in] given the input Hessian [in, in]."""
    scheme.validate(weight.shape[1], layer=name)
    w = weight.detach().to(torch.float32).clone()
    h = hessian.detach().to(torch.float32).clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    group = scheme.group_size or w.shape[1]
    perm = torch.argsort(torch.diag(h), descending=True) if act_order else None
    static = _static_groups(w, scheme, group) if act_order else None
    if perm is not None:
        w, h = w[:, perm], h[perm][:, perm]
    h_inv, used_damp = _inverse_cholesky(h, damp, max_damp, name)
    block = max(group, (block_size // group) * group) if group < w.shape[1] else block_size
    codes, scales, zeros, loss = _solve(w, h_inv, scheme, group, block, perm, static)
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


def _inverse_cholesky(
    h: torch.Tensor, damp: float, max_damp: float, name: str
) -> tuple[torch.Tensor, float]:
    """Upper Cholesky factor of H^-1, growing the dampening until it exists."""
    mean_diag = torch.mean(torch.diag(h)).item()
    current = damp
    eye = torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    while current <= max_damp:
        damped = h + current * mean_diag * eye
        lower, info = torch.linalg.cholesky_ex(damped)
        if info.item() == 0:
            inverse = torch.cholesky_inverse(lower)
            upper, info = torch.linalg.cholesky_ex(inverse, upper=True)
            if info.item() == 0 and torch.isfinite(upper).all():
                return upper, current
        current *= 10
    raise SlimformerError(
        f"the input Hessian of {name} stays singular even with dampening {max_damp}",
        "use more or longer calibration windows, or exclude this layer",
    )


def _static_groups(w: torch.Tensor, scheme: QuantScheme, group: int) -> list[tuple]:
    """Group parameters from the original (unpermuted) columns."""
    return [
        group_params(w[:, start : start + group], scheme) for start in range(0, w.shape[1], group)
    ]


def _solve(w, h_inv, scheme, group, block, perm, static):
    rows, cols = w.shape
    n_groups = -(-cols // group)
    codes = torch.zeros((rows, cols), dtype=torch.uint8)
    scales = torch.zeros((rows, n_groups), dtype=torch.float32)
    zeros = torch.zeros((rows, n_groups), dtype=torch.float32)
    if static is not None:
        for index, (scale, zero) in enumerate(static):
            scales[:, index], zeros[:, index] = scale, zero
    loss = torch.zeros((), dtype=torch.float64)
    params = None
    for start in range(0, cols, block):
        end = min(start + block, cols)
        w_block = w[:, start:end].clone()
        err_block = torch.zeros_like(w_block)
        h_block = h_inv[start:end, start:end]
        for i in range(end - start):
            column = start + i
            original = int(perm[column]) if perm is not None else column
            if static is not None:
                params = static[original // group]
            elif column % group == 0:
                params = group_params(w_block[:, i : i + group], scheme)
                scales[:, column // group], zeros[:, column // group] = params
            scale, zero = params
            q = quantize_codes(w_block[:, i], scale, zero, scheme.bits)
            codes[:, column] = q
            dq = dequantize_codes(q, scale, zero)
            d = h_block[i, i]
            err = (w_block[:, i] - dq) / d
            loss += err.square().sum() / 2
            w_block[:, i:].addr_(err, h_block[i, i:], alpha=-1)
            err_block[:, i] = err
        w[:, end:] -= err_block @ h_inv[start:end, end:]
    return codes, scales, zeros, float(loss)
