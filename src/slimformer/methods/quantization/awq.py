"""AWQ: activation-aware weight quantization (Lin et al., 2023).

A few input channels of every linear layer carry much larger activations
than the rest, so rounding errors in their weight columns cost the most.
AWQ multiplies those columns by a per-channel scale ``s`` before rounding (a
finer grid for them, relatively) and divides the layer's input by ``s``;
the division is folded into whatever produced the input (a norm, a linear)
so the model's function is unchanged and nothing is added at run time.
Where the producer cannot absorb it (a post-norm whose output is also the
residual, an activation function) an explicit ``InputScaled`` wrapper does.

The scale is ``s = x ** alpha`` with ``x`` the mean |input| per channel, and
``alpha`` is searched per group of linears sharing an input, block by block
on calibration data, for the lowest error of the *block's output*; alpha 0
(no scaling) is always a candidate, so the search never picks a scale that
does worse than plain rounding on that objective. Every group of a block is
searched on the full-precision block with only its own consumers rounded
(as the reference implementation does), its best scale is folded in at
once (exact while the weights are still float), and only then is the block
quantized: a group's producer may be another group's consumer (``up_proj``
both reads the MLP input and produces ``down_proj``'s), so nothing may be
rounded before every scale has been folded.

After scaling, an optional clip search picks a clipping ratio per weight
group, as AWQ does, by the error of each group's contribution to the
layer's *output* on the calibration inputs (not the weight error of
``grid.mse_clip_search``): the error of a group with weight change ``d`` is
``d H_g dᵀ`` with ``H_g`` that group's block of the (scaled) input's second
moment, gathered over the search windows. Query and key projections are not
clipped: their output error does not measure the attention scores' error,
which is what matters (the reference implementation skips them too).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import Field, PositiveFloat, PositiveInt
from torch import Tensor, nn

from slimformer.arch.base import ScaleGroup
from slimformer.calibration.engine import BlockContext
from slimformer.calibration.run import calibrate
from slimformer.calibration.spec import CalibrationSpec
from slimformer.calibration.stats import Collect
from slimformer.methods.base import StageContext, register_method
from slimformer.methods.quantization.folding import apply_input_scale
from slimformer.methods.quantization.gptq_solver import gptq_quantize
from slimformer.methods.quantization.rtn import round_unvisited
from slimformer.methods.quantization.settings import WeightOnlySettings
from slimformer.model import SlimModel
from slimformer.nn import WeightOnlyLinear, replace_module
from slimformer.nn.grid import (
    QuantizedWeight,
    QuantScheme,
    fake_quantize,
    quantize_weight,
)
from slimformer.nn.input_scaled import innermost

#: Scales are clamped to at least this before normalising, so dead channels keep a finite scale.
MIN_SCALE = 1e-4
#: Clip ratios tried: 1, 0.95, ..., 0.55 (the reference implementation's grid).
CLIP_STEPS = 10
CLIP_MAX_SHRINK = 0.5


class AWQ(WeightOnlySettings):
    """AWQ: activation-aware per-channel scales searched on data, then weight-only quantization."""

    method = "awq"
    family = "quantization"

    # Each (group, grid point) runs the whole block on the search tokens, so
    # grid x search_tokens sets the cost (the benchmark's AWQ rows show it on
    # smollm2-135m); 2,048 tokens is four windows of 512.
    grid: PositiveInt = Field(
        default=20, description="Points of the scale exponent search, evenly in [0, 1)."
    )
    search_tokens: PositiveInt = Field(
        default=2048,
        description="Calibration tokens the scale search runs on, in whole batches (its cost).",
    )
    clip_search: bool = Field(
        default=True,
        description="After scaling, search a clip ratio per group by output error (rtn only).",
    )
    then: Literal["rtn", "gptq"] = Field(
        default="rtn", description="How the scaled weights are finally quantized."
    )
    damp: PositiveFloat = Field(
        default=0.01, description="GPTQ dampening, share of mean diag(H) (then: gptq)."
    )
    calibration: CalibrationSpec = CalibrationSpec()


@register_method(AWQ)
def apply_awq(slim: SlimModel, config: AWQ, context: StageContext) -> None:
    scheme = config.scheme()
    # Names only: holding the modules would keep every replaced float weight alive to the end.
    run = _AWQRun(slim, config, scheme, set(config.checked_targets(slim)))
    calibrate(
        slim,
        config.calibration,
        run.process_block,
        context,
        collect=Collect(abs_mean=True, xtx=config.then == "gptq"),
    )
    run.quantize_outside_blocks()


# -- one run: the per-block steps ------------------------------------------------------


def _search_batches(ctx: BlockContext, tokens: int) -> int:
    """How many stored batches, from the first, hold at least ``tokens`` tokens (or all)."""
    total = 0
    for count, hidden in enumerate(ctx.inputs, start=1):
        total += hidden.shape[0] * hidden.shape[1]
        if total >= tokens:
            return count
    return len(ctx.inputs)


@dataclass
class _Group:
    """A scale group whose consumers are all selected, with their names in the block."""

    group: ScaleGroup
    names: list[str]
    linears: list[nn.Linear]


@dataclass
class _AWQRun:
    slim: SlimModel
    config: AWQ
    scheme: QuantScheme
    targets: set[str]
    done: set[str] = field(default_factory=set)

    def process_block(self, ctx: BlockContext) -> None:
        """Search and fold each group's scale, clip, then quantize the block's selected linears."""
        chosen = {name: lin for name, lin in ctx.linears.items() if name in self.targets}
        if not chosen:
            return
        groups = _eligible_groups(self.slim.adapter.scale_groups(ctx.layer), chosen)
        scales: dict[str, Tensor] = {}
        clips: dict[str, Tensor] = {}
        if groups:  # no group, nothing to search: the block is plainly rounded
            search = _BlockSearch(ctx, range(_search_batches(ctx, self.config.search_tokens)))
            scales = self._fold_scales(ctx, search, groups)
            if self.config.clip_search and self.config.then == "rtn":
                clips = search.clip_ratios(_clippable(groups, ctx), self.scheme)
                clips = search.helpful_clips(chosen, clips, self.scheme)
            del search  # the reference outputs are no longer needed
        self._quantize(ctx, chosen, scales, clips)
        self.done.update(chosen)

    def _fold_scales(
        self, ctx: BlockContext, search: _BlockSearch, groups: list[_Group]
    ) -> dict[str, Tensor]:
        """Each group's best scale, folded at once; by consumer name (groups left at 1 absent)."""
        scales: dict[str, Tensor] = {}
        for item in groups:
            x = ctx.stats[item.names[0]].abs_mean
            scale = search.best_scale(item.linears, x, self.scheme, self.config.grid)
            if scale is not None:
                apply_input_scale(self.slim.model, item.group, scale)
                scales.update(dict.fromkeys(item.names, scale))
        return scales

    def _quantize(
        self,
        ctx: BlockContext,
        chosen: dict[str, nn.Linear],
        scales: dict[str, Tensor],
        clips: dict[str, Tensor],
    ) -> None:
        """Replace each selected linear (the inner one, where a wrapper now holds it)."""
        where = {id(module): name for name, module in self.slim.model.named_modules()}
        for name, linear in chosen.items():
            current = where[id(linear)]  # "<name>.inner" once an InputScaled wraps it
            if self.config.then == "gptq":
                qw = self._gptq(linear, ctx.stats[name].hessian(), scales.get(name), current)
            else:
                clip = clips.get(name, 1.0)
                qw = quantize_weight(linear.weight.detach().float(), self.scheme, clip)
            packed = WeightOnlyLinear.from_quantized(qw, linear.bias)  # it copies the bias
            replace_module(self.slim.model, current, packed)

    def _gptq(
        self, linear: nn.Linear, hessian: Tensor, scale: Tensor | None, name: str
    ) -> QuantizedWeight:
        """GPTQ on the scaled weight; its input was divided by ``s``, so H' = H / (s_i s_j)."""
        if scale is not None:
            hessian = hessian / torch.outer(scale, scale)
        return gptq_quantize(
            linear.weight, hessian, self.scheme, damp=self.config.damp, name=name
        ).weight

    def quantize_outside_blocks(self) -> None:
        """Selected linears outside the layer stack saw no calibration pass: round them."""
        round_unvisited(self.slim, sorted(self.targets - self.done), self.scheme)


def _eligible_groups(groups: list[ScaleGroup], chosen: dict[str, nn.Linear]) -> list[_Group]:
    """The groups whose consumers are all selected float linears; the rest are left unscaled.

    A producer that cannot absorb a scale (already compressed, or a norm
    without an affine weight) is dropped, so the scale goes into an explicit
    ``InputScaled`` wrapper instead.
    """
    name_of = {id(linear): name for name, linear in chosen.items()}
    eligible = []
    for group in groups:
        linears = [innermost(consumer) for consumer in group.consumers]
        if not linears or any(id(linear) not in name_of for linear in linears):
            continue
        names = [name_of[id(linear)] for linear in linears]
        eligible.append(_Group(group, names, linears))  # type: ignore[arg-type]
    return eligible


def _clippable(groups: list[_Group], ctx: BlockContext) -> list[_Group]:
    """The groups' consumers minus query and key projections (see the module docstring)."""
    attention = ctx.layer.attention
    skip: set[int] = set()
    if attention is not None:
        skip = {id(innermost(attention.q)), id(innermost(attention.k))}
    kept = []
    for item in groups:
        pairs = [
            (n, lin) for n, lin in zip(item.names, item.linears, strict=True) if id(lin) not in skip
        ]
        if pairs:
            names, linears = zip(*pairs, strict=True)
            kept.append(_Group(item.group, list(names), list(linears)))
    return kept


# -- the searches ------------------------------------------------------------------------


class _BlockSearch:
    """Output-error searches on the first ``search_tokens`` stored tokens of one block.

    Calibration windows are drawn at random, so the first few are a random
    subset; the reference is the block's output on them before any change.
    """

    def __init__(self, ctx: BlockContext, batches: Sequence[int]) -> None:
        self.ctx = ctx
        self.batches = list(batches)
        self.masks = [ctx.token_masks[i] for i in self.batches]
        self.reference = ctx.forward(batches=self.batches)

    def error(self) -> float:
        """Mean squared error of the block's output now against the reference, real tokens only."""
        outputs = self.ctx.forward(batches=self.batches)
        total, count = torch.zeros((), device=self.ctx.device), 0
        for out, ref, mask in zip(outputs, self.reference, self.masks, strict=True):
            diff = (out.float() - ref.float()).square()
            if mask is not None and tuple(mask.shape) == tuple(diff.shape[:-1]):
                diff = diff[mask]
            total += diff.sum()
            count += diff.numel()
        return float(total) / max(count, 1)

    def best_scale(
        self, linears: list[nn.Linear], x: Tensor, scheme: QuantScheme, grid: int
    ) -> Tensor | None:
        """The scale of the best alpha in ``[0, 1)``, or None when no scaling (alpha 0) is best.

        Each candidate sets the consumers' weights to ``q(W s) / s``: what
        scaling, rounding and folding would give, without touching the
        producer. The weights are restored afterwards.
        """
        originals = [linear.weight.detach().clone() for linear in linears]
        best, best_error = None, float("inf")
        try:
            for step in range(grid):
                scale = awq_scale(x, step / grid)
                for linear, weight in zip(linears, originals, strict=True):
                    _set_weight(linear, _rounded_under_scale(weight, scale, scheme))
                error = self.error()
                if error < best_error:  # strict: ties keep the smaller alpha, so no scaling
                    best, best_error = (None if step == 0 else scale), error
        finally:
            for linear, weight in zip(linears, originals, strict=True):
                _set_weight(linear, weight)
        return best

    def clip_ratios(self, groups: list[_Group], scheme: QuantScheme) -> dict[str, Tensor]:
        """Per consumer, the ``[out, n_groups]`` clip ratios of lowest output error."""
        if not groups:
            return {}
        grams = self._group_grams(groups, scheme)
        return {
            name: output_clip_search(linear.weight, grams[id(item)], scheme)
            for item in groups
            for name, linear in zip(item.names, item.linears, strict=True)
        }

    def helpful_clips(
        self, chosen: dict[str, nn.Linear], clips: dict[str, Tensor], scheme: QuantScheme
    ) -> dict[str, Tensor]:
        """The clips that also lower the rounded block's output error, tried layer by layer.

        Ratios are chosen per group on each layer's own output, which ignores
        how errors combine downstream; on models with strong outlier channels
        that can hurt the block. Every selected linear is rounded as it will
        be, then each layer's clip is kept only if the block's error drops, so
        the final block is never worse than with plain rounding after scaling.
        """
        if not clips:
            return {}
        originals = {name: linear.weight.detach().clone() for name, linear in chosen.items()}
        kept: dict[str, Tensor] = {}
        try:
            for name, linear in chosen.items():
                _set_weight(linear, _rounded(originals[name], scheme))
            error = self.error()
            for name, ratios in clips.items():
                _set_weight(chosen[name], _rounded(originals[name], scheme, ratios))
                trial = self.error()
                if trial < error:
                    kept[name], error = ratios, trial
                else:
                    _set_weight(chosen[name], _rounded(originals[name], scheme))
        finally:
            for name, linear in chosen.items():
                _set_weight(linear, originals[name])
        return kept

    def _group_grams(self, groups: list[_Group], scheme: QuantScheme) -> dict[int, Tensor]:
        """Each group's block-diagonal Σ x xᵀ / n of its (now scaled) input, over real tokens."""
        grams = {id(item): _GroupGram(item.linears[0].in_features, scheme) for item in groups}
        with _input_hooks({id(item): item.linears[0] for item in groups}, grams) as hooks:
            for index, mask in zip(self.batches, self.masks, strict=True):
                hooks.mask = mask
                self.ctx.forward(batches=[index])
        return {key: gram.mean() for key, gram in grams.items()}


def awq_scale(x: Tensor, alpha: float) -> Tensor:
    """``x ** alpha``, clamped away from 0 and normalised so max and min straddle 1."""
    scale = x.float().pow(alpha).clamp(min=MIN_SCALE)
    return scale / (scale.max() * scale.min()).sqrt()


def _rounded_under_scale(weight: Tensor, scale: Tensor, scheme: QuantScheme) -> Tensor:
    """``q(W s) / s`` in ``weight``'s dtype: the effective weight after scaling and folding."""
    scale = scale.to(weight.device)
    return (fake_quantize(weight.float() * scale, scheme) / scale).to(weight.dtype)


def _rounded(weight: Tensor, scheme: QuantScheme, clip: float | Tensor = 1.0) -> Tensor:
    """``weight`` as its RTN codes will give it back, in its own dtype."""
    return fake_quantize(weight.float(), scheme, clip).to(weight.dtype)


def _set_weight(linear: nn.Linear, value: Tensor) -> None:
    with torch.no_grad():
        linear.weight.copy_(value)


def output_clip_search(weight: Tensor, gram: Tensor, scheme: QuantScheme) -> Tensor:
    """Clip ratios ``[out, n_groups]`` minimising each group's output error ``d H_g dᵀ``.

    ``gram`` is ``[n_groups, g, g]``: the diagonal blocks of the input's
    second moment. Ratio 1 (no clipping) comes first and only strictly better
    ratios replace it, so no group's output error grows.
    """
    w = weight.detach().float()
    out, width = w.shape
    g = scheme.group_width(width)
    best_ratio = torch.ones(out, width // g, device=w.device)
    best_error = torch.full_like(best_ratio, float("inf"))
    gram = gram.to(w.device)
    for step in range(CLIP_STEPS):
        ratio = 1.0 - CLIP_MAX_SHRINK * step / CLIP_STEPS
        d = (fake_quantize(w, scheme, ratio) - w).reshape(out, -1, g)
        error = (torch.einsum("ogi,gij->ogj", d, gram) * d).sum(-1)
        better = error < best_error
        best_ratio = torch.where(better, torch.full_like(best_ratio, ratio), best_ratio)
        best_error = torch.where(better, error, best_error)
    return best_ratio


class _GroupGram:
    """Σ x xᵀ over tokens, only the ``g x g`` diagonal blocks one weight group reads."""

    def __init__(self, width: int, scheme: QuantScheme) -> None:
        self.width = width
        self.g = scheme.group_width(width)
        self.sum: Tensor | None = None
        self.tokens = 0

    def update(self, x: Tensor) -> None:
        blocks = x.float().reshape(x.shape[0], -1, self.g)
        # Hooks run inside the block's (possibly bf16) autocast; the gram stays float32.
        with torch.autocast(x.device.type, enabled=False):
            added = torch.einsum("ngi,ngj->gij", blocks, blocks)
        self.sum = added if self.sum is None else self.sum + added
        self.tokens += x.shape[0]

    def mean(self) -> Tensor:
        """Zeros if no token arrived: every ratio then ties and ratio 1 (no clipping) stays."""
        if self.sum is None:
            return torch.zeros(self.width // self.g, self.g, self.g)
        return self.sum / max(self.tokens, 1)


@dataclass
class _Hooks:
    mask: Tensor | None = None


@contextmanager
def _input_hooks(linears: dict[int, nn.Linear], grams: dict[int, _GroupGram]) -> Iterator[_Hooks]:
    """Feed each linear's input, padding removed, to its gram while the block runs."""
    state = _Hooks()

    def hook_for(key: int):
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0]
            rows = x.reshape(-1, x.shape[-1])
            mask = state.mask
            if mask is not None and tuple(mask.shape) == tuple(x.shape[:-1]):
                rows = rows[mask.reshape(-1)]
            grams[key].update(rows)

        return hook

    handles = [linear.register_forward_pre_hook(hook_for(key)) for key, linear in linears.items()]
    try:
        yield state
    finally:
        for handle in handles:
            handle.remove()
