"""Integer weight grids: the one definition every weight-only quantizer shares.

RTN, GPTQ, AWQ and mixed precision differ in *which* codes they pick, not in
what a code means, so the grid lives here once: a weight row is cut into
groups of ``group_size`` inputs, each group has a scale and an integer zero
point, and a code ``q`` in ``[0, 2**bits - 1]`` stands for ``(q - zero) * scale``.

Conventions (fixed, because saved models depend on them):

* **Asymmetric** (default): the group's range ``[min(w, 0), max(w, 0)]`` is
  mapped onto all ``2**bits`` codes; ``scale = (max - min) / (2**bits - 1)`` and
  ``zero = round(-min / scale)``, an integer in ``[0, 2**bits - 1]``. The range
  always contains 0, so an integer zero point exists and 0 is represented
  exactly (an all-positive row gets ``zero = 0``).
* **Symmetric**: ``scale = absmax / (2**(bits-1) - 1)`` and the zero point is the
  fixed offset ``2**(bits-1)``, so codes stay unsigned. Code 0 is unused; in
  exchange ``w`` and ``-w`` quantize to exact negatives, like the int8 path.
* **Scales are float16 values** (held in float32): every saved format stores
  fp16 scales, so codes are computed against exactly the scale that is stored.
  Scales are rounded *up* to fp16 and clamped to ``[2**-24, 65504]``, so they
  are never zero and the grid always covers the (clipped) range.

With no clipping every weight is within ``scale / 2`` of its dequantized value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slimformer.errors import SlimformerError

SUPPORTED_BITS = (2, 3, 4, 8)
#: Smallest and largest scale: both exactly representable in float16.
MIN_SCALE = 2.0**-24
MAX_SCALE = 65504.0


@dataclass(frozen=True)
class QuantScheme:
    """How a weight matrix is quantized: bits per code, inputs per group, zero point."""

    bits: int
    #: Inputs per group; 0 means one group per output channel (the whole row).
    group_size: int
    symmetric: bool = False

    @property
    def maxq(self) -> int:
        """The largest code."""
        return 2**self.bits - 1

    def group_width(self, in_features: int) -> int:
        """Inputs per group for a layer ``in_features`` wide."""
        return self.group_size or in_features

    def n_groups(self, in_features: int) -> int:
        """Groups per output row for a layer ``in_features`` wide."""
        return in_features // self.group_width(in_features)

    def validate(self, in_features: int, layer: str = "") -> None:
        """Raise a SlimformerError if this scheme cannot quantize a layer this wide."""
        if self.bits not in SUPPORTED_BITS:
            raise SlimformerError(
                f"{self.bits}-bit weights are not supported",
                f"use bits {', '.join(map(str, SUPPORTED_BITS))}",
            )
        if self.group_size < 0:
            raise SlimformerError(
                f"group_size {self.group_size} is negative",
                "use 0 (one group per output channel) or a positive group size such as 128",
            )
        if self.group_size and in_features % self.group_size:
            where = f" of {layer}" if layer else ""
            raise SlimformerError(
                f"group_size {self.group_size} does not divide the {in_features} input "
                f"features{where}",
                f"use a group size that divides {in_features}, "
                f"{_suggest_group_size(in_features, self.group_size)}",
            )


def _suggest_group_size(in_features: int, group_size: int) -> str:
    """The largest power of two (at least 16) not above ``group_size`` that divides the width."""
    size = 1 << (min(group_size, in_features).bit_length() - 1)
    while size >= 16:
        if in_features % size == 0:
            return f"e.g. {size}, or 0 for one group per output channel"
        size //= 2
    return "or 0 for one group per output channel"


@dataclass
class QuantizedWeight:
    """Codes, scales and zero points of one ``[out, in]`` weight under ``scheme``.

    ``codes`` is uint8 ``[out, in]`` (one code per byte; packing is the storage
    layer's business), ``scales`` float32 ``[out, n_groups]`` holding fp16
    values, ``zeros`` uint8 ``[out, n_groups]`` (the constant ``2**(bits-1)``
    when symmetric).
    """

    codes: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor
    scheme: QuantScheme

    @property
    def shape(self) -> tuple[int, int]:
        return (self.codes.shape[0], self.codes.shape[1])

    def split(self, rows: list[int]) -> list[QuantizedWeight]:
        """Row blocks of sizes ``rows``: layers solved together, saved apart."""
        parts = zip(
            self.codes.split(rows), self.scales.split(rows), self.zeros.split(rows), strict=True
        )
        return [QuantizedWeight(c, s, z, self.scheme) for c, s, z in parts]

    def dequantize(self) -> torch.Tensor:
        """The float32 ``[out, in]`` weight these codes stand for."""
        out, n_groups = self.scales.shape
        grouped = self.codes.reshape(out * n_groups, -1)
        weight = dequantize_codes(grouped, self.scales.reshape(-1), self.zeros.reshape(-1))
        return weight.reshape(self.shape)


def _per_row(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape per-row ``values`` so they broadcast over the rows of ``like``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def _as_fp16_scale(scale: torch.Tensor) -> torch.Tensor:
    """The smallest fp16 value >= ``scale`` (clamped, never zero), as float32."""
    scale = scale.float().clamp(MIN_SCALE, MAX_SCALE)
    half = scale.half()
    up = torch.nextafter(half, torch.full_like(half, float("inf")))
    return torch.where(half.float() < scale, up, half).float()


def group_params(
    w: torch.Tensor, scheme: QuantScheme, clip: float | torch.Tensor = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point (both float32 ``[rows]``) of each row of ``w`` ``[rows, g]``.

    ``clip`` (a float, or one ratio per row) shrinks the range before the grid
    is fitted: outliers are clamped so the other weights get finer steps.
    """
    w = w.detach().float()
    clip = torch.as_tensor(clip, dtype=torch.float32, device=w.device)
    clip = clip.reshape(-1) if clip.dim() else clip
    if scheme.symmetric:
        absmax = w.abs().amax(dim=1) * clip
        scale = _as_fp16_scale(absmax / (2 ** (scheme.bits - 1) - 1))
        zero = torch.full_like(scale, 2 ** (scheme.bits - 1))
        return scale, zero
    low = w.amin(dim=1).clamp(max=0) * clip
    high = w.amax(dim=1).clamp(min=0) * clip
    scale = _as_fp16_scale((high - low) / scheme.maxq)
    zero = torch.round(-low / scale).clamp(0, scheme.maxq)
    return scale, zero


def quantize_codes(
    w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int
) -> torch.Tensor:
    """uint8 codes of ``w`` (one group ``[rows, g]`` or one column ``[rows]``), per-row params."""
    q = torch.round(w.float() / _per_row(scale, w)) + _per_row(zero.float(), w)
    return q.clamp(0, 2**bits - 1).to(torch.uint8)


def dequantize_codes(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """float32 values of ``codes`` (``[rows, g]`` or ``[rows]``) under per-row params."""
    return (codes.float() - _per_row(zero.float(), codes)) * _per_row(scale.float(), codes)


def _groups(w: torch.Tensor, scheme: QuantScheme) -> torch.Tensor:
    """``w`` ``[out, in]`` viewed as ``[out * n_groups, group_width]``, validated first."""
    if w.dim() != 2:
        raise ValueError(f"expected a 2-D weight, got shape {tuple(w.shape)}")
    scheme.validate(w.shape[1])
    return w.detach().float().reshape(-1, scheme.group_width(w.shape[1]))


def quantize_weight(
    w: torch.Tensor, scheme: QuantScheme, clip: float | torch.Tensor = 1.0
) -> QuantizedWeight:
    """Round-to-nearest codes of ``w`` ``[out, in]``; ``clip`` is a float or ``[out, n_groups]``."""
    groups = _groups(w, scheme)
    clip = clip.reshape(-1) if isinstance(clip, torch.Tensor) else clip
    scale, zero = group_params(groups, scheme, clip)
    codes = quantize_codes(groups, scale, zero, scheme.bits)
    out = w.shape[0]
    return QuantizedWeight(
        codes=codes.reshape(w.shape),
        scales=scale.reshape(out, -1),
        zeros=zero.to(torch.uint8).reshape(out, -1),
        scheme=scheme,
    )


def fake_quantize(
    w: torch.Tensor, scheme: QuantScheme, clip: float | torch.Tensor = 1.0
) -> torch.Tensor:
    """``w`` rounded onto its grid and back, in ``w``'s dtype (to measure or simulate error)."""
    return quantize_weight(w, scheme, clip).dequantize().to(w.dtype)


def mse_clip_search(
    w: torch.Tensor,
    scheme: QuantScheme,
    grid: int = 20,
    max_shrink: float = 0.2,
    norm: float = 2.4,
) -> torch.Tensor:
    """Per-group clipping ratios ``[out, n_groups]`` that minimise quantization error.

    Tries ``grid + 1`` ratios from 1 (no clipping) down to ``1 - max_shrink`` and
    keeps, for each group, the one with the lowest ``sum |q(w) - w| ** norm``
    (a norm above 2 weighs large errors more, as in GPTQ's search). Ratio 1 is
    a candidate and only strictly better ratios replace it, so the error never
    exceeds that of plain rounding.
    """
    groups = _groups(w, scheme)
    best_ratio = torch.ones(groups.shape[0], device=groups.device)
    best_error = torch.full_like(best_ratio, float("inf"))
    for step in range(grid + 1):
        ratio = 1.0 - max_shrink * step / grid
        scale, zero = group_params(groups, scheme, ratio)
        codes = quantize_codes(groups, scale, zero, scheme.bits)
        error = (dequantize_codes(codes, scale, zero) - groups).abs().pow(norm).sum(dim=1)
        better = error < best_error
        best_ratio = torch.where(better, torch.full_like(best_ratio, ratio), best_ratio)
        best_error = torch.where(better, error, best_error)
    return best_ratio.reshape(w.shape[0], -1)
