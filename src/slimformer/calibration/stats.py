"""Per-linear input statistics that the calibration engine gathers block by block.

Every data-aware method reads the same few numbers about what flows INTO a
linear layer: GPTQ and SparseGPT the second moment X^T X, AWQ the mean |x| per
channel, SmoothQuant the max |x|, Wanda the per-channel sum of x². They are
collected by forward pre-hooks on the block's ``nn.Linear`` modules, over the
real tokens only (padding, where the attention mask is 0, is left out), and
kept as raw sums with a token count so that a statistic can be normalised one
consistent way however many batches fed it.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from slimformer.errors import SlimformerError
from slimformer.nn.finite import check_tensors_finite

#: Tokens pooled before one low-precision X^T X product (bounded memory, large products).
PRODUCT_TOKENS = 4096


class StopBlock(Exception):
    """Raised by the recorder once the block's last linear has seen its input.

    The statistics pass only needs what flows into the linears; the rest of the
    block (the last linear's own product, the residual add) is skipped.
    """


@dataclass(frozen=True)
class Collect:
    """Which statistics of each linear's input to gather (all off costs one forward less).

    ``dtype`` is the accumulation precision: float32 by default, as the GPTQ
    reference does (fast on accelerators, and sums over a few hundred thousand
    tokens stay well within float32's precision for a Hessian that is damped
    anyway); pass ``torch.float64`` for very long calibration sets or when
    comparing against exact references.
    """

    xtx: bool = False
    abs_mean: bool = False
    abs_max: bool = False
    sq_norm: bool = False
    keep_inputs: bool = False
    dtype: torch.dtype = torch.float32

    @property
    def any(self) -> bool:
        """Whether anything is requested; if not, the engine skips the statistics pass."""
        return self.xtx or self.abs_mean or self.abs_max or self.sq_norm or self.keep_inputs


@dataclass
class LinearStats:
    """Raw sums over the real tokens that reached one linear's input.

    A field is None when its statistic was not requested. Sums are kept raw
    (not averaged) so the normalisation lives in one place: :meth:`hessian`,
    :attr:`abs_mean`, :meth:`l2_norm`.
    """

    name: str
    in_features: int
    tokens: int = 0
    #: Σ x xᵀ over tokens, ``[in, in]``.
    xtx: Tensor | None = None
    #: Σ |x| per input channel, ``[in]``.
    abs_sum: Tensor | None = None
    #: max |x| per input channel, ``[in]``.
    abs_max: Tensor | None = None
    #: Σ x² per input channel, ``[in]`` (equals the diagonal of ``xtx``).
    sq_norm: Tensor | None = None
    #: The raw inputs, one ``[tokens_in_batch, in]`` tensor per batch, in the model's dtype.
    inputs: list[Tensor] | None = None
    #: The precision the sums accumulate in (``Collect.dtype``).
    dtype: torch.dtype = torch.float32
    #: Low-precision inputs waiting for one larger X^T X product (see :meth:`update`).
    _pending: list[Tensor] = field(default_factory=list, repr=False)
    _pending_tokens: int = field(default=0, repr=False)

    @classmethod
    def empty(
        cls, name: str, in_features: int, collect: Collect, device: torch.device
    ) -> LinearStats:
        """Zeroed accumulators for what ``collect`` asks, so unused linears read as zero tokens."""

        def zeros(*shape: int) -> Tensor:
            return torch.zeros(*shape, dtype=collect.dtype, device=device)

        return cls(
            name=name,
            in_features=in_features,
            xtx=zeros(in_features, in_features) if collect.xtx else None,
            abs_sum=zeros(in_features) if collect.abs_mean else None,
            abs_max=zeros(in_features) if collect.abs_max else None,
            sq_norm=zeros(in_features) if collect.sq_norm else None,
            inputs=[] if collect.keep_inputs else None,
            dtype=collect.dtype,
        )

    def update(self, x: Tensor, product_dtype: torch.dtype | None = None) -> None:
        """Add a ``[tokens, in]`` batch of inputs to every requested accumulator.

        ``product_dtype`` (e.g. bf16) computes X^T X in that dtype before adding
        it to the float32 sum: faster, with one rounding per product. Such
        inputs are pooled until :data:`PRODUCT_TOKENS` tokens wait, so that the
        product is one large matrix multiplication and its conversion to the
        sum's dtype is paid once per pool, not once per batch.
        """
        if x.shape[0] == 0:
            return
        self.tokens += x.shape[0]
        if self.inputs is not None:
            self.inputs.append(x.detach().clone())
        if self.xtx is not None and product_dtype is not None:
            self._pending.append(x.detach().to(product_dtype))
            self._pending_tokens += x.shape[0]
            if self._pending_tokens >= PRODUCT_TOKENS:
                self.flush()
        exact_xtx = self.xtx is not None and product_dtype is None
        per_channel = (self.abs_sum, self.abs_max, self.sq_norm)
        if not exact_xtx and all(stat is None for stat in per_channel):
            return  # skip converting an input nothing below reads
        x = x.detach().to(self.dtype)
        if exact_xtx:
            self.xtx.addmm_(x.T, x)
        if self.abs_sum is not None:
            self.abs_sum.add_(x.abs().sum(0))
        if self.abs_max is not None:
            torch.maximum(self.abs_max, x.abs().amax(0), out=self.abs_max)
        if self.sq_norm is not None:
            self.sq_norm.add_(x.square().sum(0))

    def flush(self) -> None:
        """Add the pooled low-precision inputs to X^T X (the engine calls this after a pass).

        Then check the sums: an overflowed statistic would otherwise reach the
        solvers, which could only advise a larger ``damp``.
        """
        if self._pending:
            low = torch.cat(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending, self._pending_tokens = [], 0
            if self.xtx is not None:
                self.xtx.add_((low.T @ low).to(self.xtx.dtype))
        self.check_finite()

    def check_finite(self) -> None:
        """Raise a one-line error naming this linear if any of its sums is NaN or inf."""
        sums = {
            "X^T X": self.xtx,
            "sum |x|": self.abs_sum,
            "max |x|": self.abs_max,
            "sum x^2": self.sq_norm,
        }
        check_tensors_finite(
            ((what, value) for what, value in sums.items() if value is not None),
            f"the calibration statistics of the input to {self.name} are not finite",
            "the model's activations overflow in the precision it runs in (e.g. float16): "
            "load it in float32 or set the calibration compute_dtype to float32",
        )

    def hessian(self) -> Tensor:
        """GPTQ's H = 2/n Σ x xᵀ over the n real tokens (zeros if no token arrived)."""
        self.flush()
        return 2.0 * self._require("xtx", self.xtx) / max(self.tokens, 1)

    @property
    def abs_mean(self) -> Tensor:
        """Mean |x| per input channel, AWQ's activation scale."""
        return self._require("abs_mean", self.abs_sum) / max(self.tokens, 1)

    def l2_norm(self) -> Tensor:
        """‖x_j‖₂ per input channel over all tokens, Wanda's activation norm."""
        return self._require("sq_norm", self.sq_norm).sqrt()

    def _require(self, option: str, value: Tensor | None) -> Tensor:
        """A statistic read without having been collected is a method bug worth naming."""
        if value is None:
            raise SlimformerError(
                f"the {option} statistic of {self.name} was not collected",
                f"pass collect=Collect({option}=True) to run_sequential",
            )
        return value


@dataclass
class StatsRecorder:
    """Hooks every given linear and feeds its input, padding removed, to its LinearStats.

    ``token_mask`` is set by the engine before each batch: a ``[batch, length]``
    bool tensor (None when every token is real). Inputs whose leading shape is
    not ``[batch, length]`` are counted whole.
    """

    linears: dict[str, nn.Linear]
    collect: Collect
    device: torch.device
    token_mask: Tensor | None = None
    #: dtype of the X^T X products (bf16 halves their cost); sums stay in ``collect.dtype``.
    compute_dtype: torch.dtype | None = None
    stats: dict[str, LinearStats] = field(init=False)
    _handles: list[Any] = field(init=False, default_factory=list)
    _seen: dict[int, tuple[Any, LinearStats]] = field(init=False, default_factory=dict)
    #: The linears in the order the first batch called them.
    _calls: list[str] | None = field(init=False, default_factory=list)
    #: The linear after whose input the block can stop (None: run every batch whole).
    _stop_at: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.stats = {
            name: LinearStats.empty(name, linear.in_features, self.collect, self.device)
            for name, linear in self.linears.items()
        }

    def __enter__(self) -> StatsRecorder:
        for name, linear in self.linears.items():
            self._handles.append(
                linear.register_forward_pre_hook(self._hook(name), with_kwargs=True)
            )
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for stats in self.stats.values():
            stats.flush()

    def feed(self, names: list[str], x: Tensor) -> None:
        """Record ``x`` as the input of every linear in ``names`` without running them.

        For callers that compute a linear's input themselves (the branch-wise
        engine): the linears share one accumulator, as if their hooks had seen it.
        """
        first = self.stats[names[0]]
        first.update(self._real_tokens(x), self.compute_dtype)
        for name in names[1:]:
            self.stats[name] = first

    def end_batch(self) -> None:
        """Learn from the first (whole) batch where later batches may stop.

        Only when every linear ran exactly once is "the last linear's input"
        a safe place to stop: a linear called twice, or not at all, keeps
        every batch running to the end.
        """
        if self._calls is None:
            return
        calls, self._calls = self._calls, None
        if len(calls) == len(set(calls)) == len(self.linears):
            self._stop_at = calls[-1]

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            x = args[0] if args else next(iter(kwargs.values()))
            if self._calls is not None:
                self._calls.append(name)
            shared = self._seen_input(x)
            if shared is None:
                self.stats[name].update(self._real_tokens(x), self.compute_dtype)
                self._remember(x, self.stats[name])
            elif shared is not self.stats[name]:
                self.stats[name] = shared  # same input as another linear: one accumulator
            if name == self._stop_at:
                raise StopBlock

        return hook

    def _seen_input(self, x: Tensor) -> LinearStats | None:
        """The stats that already took this very tensor (q, k and v read one input)."""
        entry = self._seen.get(id(x))
        return entry[1] if entry is not None and entry[0]() is x else None

    def _remember(self, x: Tensor, stats: LinearStats) -> None:
        # Identity via a weak reference, not the address: a freed activation's
        # memory (and id) can be reused by a different tensor later in the pass.
        if len(self._seen) > 64:
            self._seen = {k: v for k, v in self._seen.items() if v[0]() is not None}
        self._seen[id(x)] = (weakref.ref(x), stats)

    def _real_tokens(self, x: Tensor) -> Tensor:
        """Flatten to ``[tokens, in]`` and drop padded positions."""
        rows = x.reshape(-1, x.shape[-1])
        mask = self.token_mask
        if mask is None or tuple(x.shape[:-1]) != tuple(mask.shape):
            return rows
        return rows[mask.reshape(-1)]
