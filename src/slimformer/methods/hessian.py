"""The input Hessian of a linear layer, made safe to invert: shared by GPTQ and SparseGPT.

Both solvers (Frantar et al., 2022 and 2023) remove one weight column at a
time (by rounding it, or by zeroing some of its entries) and move the error
onto the columns not yet processed through the upper Cholesky factor of
H^-1, where H = X^T X of the layer's calibration inputs. Both need the same
preparation, so it lives here once:

- Dead input channels (a zero on H's diagonal: the input never fires) get a
  unit diagonal, so H stays invertible, and their weights are zeroed, since
  nothing they multiply ever reaches the output.
- Dampening: a fraction of the mean diagonal is added; when the Cholesky
  factorisation still fails (a singular Hessian), dampening grows tenfold up
  to ``max_damp`` and then a clear error names the layer.
"""

from __future__ import annotations

import torch

from slimformer.errors import SlimformerError


def prepare_hessian(
    weight: torch.Tensor, hessian: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 copies of ``weight`` [out, in] and ``hessian`` [in, in], dead inputs fixed."""
    w = weight.detach().to(torch.float32).clone()
    h = hessian.detach().to(torch.float32).clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    return w, h


def inverse_cholesky(
    h: torch.Tensor, damp: float, max_damp: float, name: str
) -> tuple[torch.Tensor, float]:
    """Upper Cholesky factor of (H + damp * mean(diag H) * I)^-1 and the dampening used.

    Dampening grows tenfold from ``damp`` until the factor exists, up to ``max_damp``.
    """
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
