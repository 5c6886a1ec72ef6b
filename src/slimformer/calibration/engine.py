"""The sequential calibration engine that every data-aware method rides on.

GPTQ, AWQ, SmoothQuant, SparseGPT, Wanda, ASVD and SVD-LLM all need the same
loop: feed calibration text to the model, then walk its stack of blocks one at
a time, gather statistics of what each linear layer reads, let the method
rewrite the block, and feed the *rewritten* block's outputs to the next one so
that errors propagate as they will at inference. :func:`run_sequential` is
that loop; a method supplies only ``process_block``.

Only one block's activations for the calibration set live at a time (plus the
model's weights), and nothing here knows a model family: the engine records
exactly what the model's own forward passes to its first block (attention
masks in whatever form the model built them, rotary ``position_embeddings``,
``position_ids``, ...) and replays those arguments to every block.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from slimformer.arch import get_adapter
from slimformer.arch.base import Adapter, LayerParts
from slimformer.calibration.batch import BlockBatch
from slimformer.calibration.branches import (
    branches_reproduce_block,
    calibrate_branches,
    usable_branches,
)
from slimformer.calibration.session import CalibrationSession
from slimformer.calibration.stats import Collect, LinearStats, StatsRecorder, StopBlock
from slimformer.errors import SlimformerError
from slimformer.model import SlimModel
from slimformer.nn.registry import reuse_float_weights

__all__ = ["BlockContext", "Collect", "LinearStats", "run_sequential"]

Calibration = Tensor | Sequence[Tensor] | Mapping[str, Tensor] | Sequence[Mapping[str, Tensor]]


class _StopForward(Exception):
    """Raised inside the first block's pre-hook: the rest of the model need not run."""


@dataclass
class BlockContext:
    """What ``process_block`` sees for one block of the stack.

    ``stats`` holds the requested input statistics of every linear in
    ``linears``, both keyed by the linear's qualified name in the whole model
    (``model.layers.3.self_attn.q_proj``). The method may change or replace
    modules inside ``block``; the engine then feeds the changed block's outputs
    to the next block.
    """

    index: int
    layer: LayerParts
    block: nn.Module
    linears: dict[str, nn.Linear]
    stats: dict[str, LinearStats]
    device: torch.device
    num_blocks: int
    _batches: list[BlockBatch] = field(repr=False)

    @property
    def inputs(self) -> list[Tensor]:
        """The block's stored input hidden states, one ``[batch, length, hidden]`` per batch."""
        return [batch.hidden for batch in self._batches]

    @property
    def token_masks(self) -> list[Tensor | None]:
        """Per batch, the ``[batch, length]`` bool mask of real tokens (None: all real)."""
        return [batch.mask for batch in self._batches]

    def shared_input_groups(self, names: Sequence[str]) -> list[list[str]]:
        """``names`` grouped by the input they read (q/k/v, gate/up), in block order.

        Linears reading one input share one statistics object, and methods
        that treat weight rows independently given the input (GPTQ,
        SparseGPT) solve each group as one stacked matrix: the same result
        with a fraction of the per-column work.
        """
        groups: dict[int, list[str]] = {}
        for name in self.linears:
            if name in names:
                groups.setdefault(id(self.stats[name]), []).append(name)
        return list(groups.values())

    def forward(
        self, inputs: Sequence[Tensor] | None = None, batches: Sequence[int] | None = None
    ) -> list[Tensor]:
        """Run the block as it is now on the stored inputs (or ``inputs``), without gradients.

        Output-error searches (AWQ's scale search, for one) call this after
        trying a change to compare the block's outputs with the originals.
        ``batches`` picks stored batches by index (default: all), so a search
        that tries many changes can bound its cost to a few; ``inputs`` then
        holds one tensor per picked batch.
        """
        chosen = self._batches if batches is None else [self._batches[i] for i in batches]
        if inputs is not None and len(inputs) != len(chosen):
            raise SlimformerError(
                f"ctx.forward got {len(inputs)} input batches, it runs {len(chosen)}",
                "pass one tensor per batch of ctx.inputs (or of the picked batches), in order",
            )
        hidden = list(inputs) if inputs is not None else [None] * len(chosen)
        with torch.no_grad(), reuse_float_weights():  # weights only change between calls
            return [batch.run(self.block, h) for batch, h in zip(chosen, hidden, strict=True)]


def run_sequential(
    slim: SlimModel | nn.Module,
    calibration: Calibration,
    process_block: Callable[[BlockContext], None],
    *,
    collect: Collect = Collect(),  # noqa: B008 - a frozen dataclass, safe as a default
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    compute_dtype: torch.dtype | None = None,
    true_sequential: bool = False,
    progress: bool = True,
    session: CalibrationSession | None = None,
) -> None:
    """Walk the model's blocks in order, calling ``process_block`` on each with its statistics.

    ``calibration`` is a LongTensor ``[n, length]`` of token ids (attention mask
    of ones), or ids and a ``[n, length]`` attention mask as a pair or as a
    mapping with ``input_ids`` and ``attention_mask`` (a tokenizer's output);
    the adapter's ``calibration_inputs`` turns each batch of them into the
    forward's arguments. A model fed something else is given its inputs by
    name: a mapping of ``[n, ...]`` tensors without ``input_ids`` (cut into
    batches of ``batch_size``), or a list of such mappings, one per batch; an
    ``attention_mask`` among them marks the real tokens.
    Each block is moved to ``device`` while it is worked on and then moved back;
    the stored activations live on ``device``. ``compute_dtype`` (e.g.
    ``torch.bfloat16``) runs the block passes under autocast: faster, with
    statistics still accumulated in float32; None keeps full precision.

    ``true_sequential`` (for methods that compress linears independently given
    their statistics, such as GPTQ) walks blocks the adapter describes as
    residual branches branch by branch (see :mod:`slimformer.calibration.branches`):
    ``process_block`` is then called several times per block, each time with
    only the linears whose inputs are now final (q/k/v, then o, ...), and each
    block costs one forward pass instead of about 1.75. Other blocks run whole.

    ``session`` (a :class:`~slimformer.calibration.session.CalibrationSession`)
    keeps the first block's inputs for plain token windows, so a later walk
    over the same windows skips the model's prefix while nothing outside the
    stack has changed.

    A block shared by several positions of the stack (``stack[4] is stack[3]``,
    cross-layer sharing) is calibrated and compressed once, at its first
    position, from the statistics of that position's inputs; at its later
    positions it only runs (compressed) to produce the next block's inputs.
    Linears are named by the block's first name (``model.layers.3...``).
    """
    named = _named_inputs(calibration)
    tokens = None if named is not None else _split_calibration(calibration)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise SlimformerError(f"batch_size is {batch_size!r}", "set batch_size to an integer >= 1")
    model = slim.model if isinstance(slim, SlimModel) else slim
    adapter = slim.adapter if isinstance(slim, SlimModel) else get_adapter(model)
    stack = _layer_stack(adapter)
    device = torch.device(device)
    feeds = _feeds(adapter, tokens, named, batch_size)
    with _eval_mode(model):
        batches = _first_inputs(model, stack, calibration, feeds, device, batch_size, session)
        for batch in batches:
            batch.compute_dtype = compute_dtype
        walk = _Walk(
            adapter=adapter,
            stack=stack,
            names={id(module): name for name, module in model.named_modules()},
            batches=batches,
            process_block=process_block,
            collect=collect,
            device=device,
            branch_wise=true_sequential,
        )
        for index in tqdm(range(len(stack)), desc="calibrate", unit="block", disable=not progress):
            _calibrate_block(walk, index)
            _release(device)
        del walk
    del batches
    _release(device)
    if session is not None:
        session.check_outside(model, stack)
    if isinstance(slim, SlimModel):
        slim.refresh_adapter()  # process_block may have replaced modules


# -- validation ---------------------------------------------------------------------


def _split_calibration(calibration: Calibration) -> tuple[Tensor, Tensor]:
    """Token ids and a mask of the same shape; shapes checked here so errors name the input."""
    if isinstance(calibration, Mapping):
        ids, mask = calibration.get("input_ids"), calibration.get("attention_mask")
    elif isinstance(calibration, Tensor):
        ids, mask = calibration, None
    else:
        ids, mask = [*calibration, None, None][:2]
    if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.numel() == 0:
        shape = tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__
        raise SlimformerError(
            f"calibration must be a non-empty [n, length] tensor of token ids, got {shape}",
            "pass calibration_windows(tokenizer, ...) or token ids shaped [n, length]",
        )
    if mask is None:
        return ids, torch.ones_like(ids)
    if not isinstance(mask, Tensor) or mask.shape != ids.shape:
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise SlimformerError(
            f"calibration attention mask has shape {shape}, the ids {tuple(ids.shape)}",
            "pass an attention mask with one 0/1 entry per token id",
        )
    return ids, mask


_Named = Mapping[str, Tensor] | list[Mapping[str, Tensor]]


def _named_inputs(calibration: Calibration) -> _Named | None:
    """Calibration given as model inputs by name, or None for the token-id forms.

    A single mapping without ``input_ids`` holds ``[n, ...]`` tensors; a list
    of mappings holds one batch each.
    """
    if isinstance(calibration, Mapping):
        if "input_ids" in calibration or not calibration:
            return None
        _check_named(calibration)
        return calibration
    if not isinstance(calibration, (list, tuple)) or not calibration:
        return None
    if not all(isinstance(item, Mapping) for item in calibration):
        return None
    for item in calibration:
        _check_named(item)
    return list(calibration)


def _check_named(inputs: Mapping[str, Tensor]) -> None:
    """Every named input is a tensor with the same, non-zero first (batch) dimension."""
    sizes = {v.shape[0] if isinstance(v, Tensor) and v.dim() else None for v in inputs.values()}
    if not inputs or None in sizes or len(sizes) != 1 or 0 in sizes:
        shapes = {
            k: tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            for k, v in inputs.items()
        }
        raise SlimformerError(
            f"calibration inputs must be tensors sharing a non-empty batch dimension, got {shapes}",
            "pass a mapping of [n, ...] tensors by the names the model's forward takes",
        )


def _layer_stack(adapter: Adapter) -> nn.ModuleList:
    stack = adapter.layer_stack()
    if stack is None or len(stack) == 0:
        raise SlimformerError(
            f"this method needs a model with a stack of layers, and none was found in "
            f"{type(adapter.model).__name__}",
            "use a transformer whose blocks sit in an nn.ModuleList, or a family slimformer "
            "has an adapter for",
        )
    return stack


# -- step 1: the first block's inputs ------------------------------------------------


@dataclass
class _Feed:
    """One calibration batch: the forward's arguments, and its ``[batch, length]`` token mask."""

    inputs: dict[str, Any]
    mask: Tensor | None


def _feeds(
    adapter: Adapter,
    tokens: tuple[Tensor, Tensor] | None,
    named: _Named | None,
    batch_size: int,
) -> Iterator[_Feed]:
    """The batches as the model takes them, made by the adapter one at a time.

    Token ids and their mask become the forward's arguments through
    ``adapter.calibration_inputs``; inputs given by name go through
    ``adapter.forward_inputs``.
    """
    if tokens is not None:
        ids, mask = tokens
        for start in range(0, ids.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            yield _Feed(adapter.calibration_inputs(ids[rows], mask[rows]), mask[rows])
        return
    chunks = _cut(named, batch_size) if isinstance(named, Mapping) else named
    for chunk in chunks:
        yield _Feed(adapter.forward_inputs(chunk), chunk.get("attention_mask"))


def _cut(inputs: Mapping[str, Tensor], batch_size: int) -> Iterator[dict[str, Tensor]]:
    """A mapping of ``[n, ...]`` tensors as mappings of ``batch_size`` rows."""
    total = next(iter(inputs.values())).shape[0]
    for start in range(0, total, batch_size):
        yield {name: value[start : start + batch_size] for name, value in inputs.items()}


def _first_inputs(
    model: nn.Module,
    stack: nn.ModuleList,
    calibration: Calibration,
    feeds: Iterator[_Feed],
    device: torch.device,
    batch_size: int,
    session: CalibrationSession | None,
) -> list[BlockBatch]:
    """Captured now, or kept by ``session`` from an earlier walk over the same windows.

    Only plain windows (one tensor, every token real) are kept: their identity
    names them, where a mask given alongside would have to be compared too.
    """

    def capture() -> list[BlockBatch]:
        return _capture_inputs(model, stack, feeds, device)

    if session is None or not isinstance(calibration, Tensor):
        return capture()
    return session.first_inputs(model, stack, calibration, device, batch_size, capture)


def _capture_inputs(
    model: nn.Module,
    stack: nn.ModuleList,
    feeds: Iterable[_Feed],
    device: torch.device,
) -> list[BlockBatch]:
    """Run the model up to its first block on every batch and record what the block receives."""
    batches: list[BlockBatch] = []
    shared: dict[tuple, Tensor] = {}
    current: dict[str, Tensor | None] = {}

    def grab(module: nn.Module, args: tuple, kwargs: dict) -> None:
        batches.append(_record_call(args, kwargs, current["mask"], device, shared))
        raise _StopForward

    handle = stack[0].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad(), _outside_on(model, stack, device):
            for feed in feeds:
                inputs = _inputs_to(feed.inputs, device)
                mask = None if feed.mask is None else feed.mask.to(device)
                current["mask"] = None if mask is None or bool(mask.all()) else mask.bool()
                _run_until_stopped(model, inputs)
    finally:
        handle.remove()
    return batches


def _inputs_to(inputs: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in inputs.items()}


def _run_until_stopped(model: nn.Module, inputs: dict[str, Any]) -> None:
    try:
        model(**inputs)
    except _StopForward:
        return
    raise SlimformerError(
        f"{type(model).__name__}'s forward never called the first block of its layer stack",
        "calibration needs a model whose forward runs its stack of layers in order",
    )


def _record_call(
    args: tuple,
    kwargs: dict[str, Any],
    mask: Tensor | None,
    device: torch.device,
    shared: dict[tuple, Tensor],
) -> BlockBatch:
    """Split a block call into its hidden states and the rest, moved to ``device``."""
    if args:
        hidden, key, rest = args[0], None, args[1:]
    else:
        key = "hidden_states" if "hidden_states" in kwargs else _first_tensor_key(kwargs)
        hidden, rest = kwargs[key], ()
    others = {k: _drop_cache(v) for k, v in kwargs.items() if k != key}
    return BlockBatch(
        hidden=hidden.detach().to(device),
        args=_to_device(rest, device, shared),
        kwargs=_to_device(others, device, shared),
        key=key,
        mask=mask,
    )


def _first_tensor_key(kwargs: dict[str, Any]) -> str:
    for key, value in kwargs.items():
        if isinstance(value, Tensor):
            return key
    raise SlimformerError(
        "the first block of the layer stack was called without hidden states",
        "calibration needs blocks that take the hidden states as a tensor argument",
    )


def _drop_cache(value: Any) -> Any:
    """A KV cache would grow on every replay of the block; the engine never needs one."""
    return None if type(value).__name__.endswith("Cache") else value


def _to_device(value: Any, device: torch.device, shared: dict[tuple, Tensor]) -> Any:
    """Move tensors in nested tuples/lists/dicts; equal tensors across batches share storage.

    Rotary cos/sin and position ids are the same for every batch of one length,
    so only one copy of each is kept (compared with the last tensor of the same
    shape and dtype, which keeps this linear in the number of batches).
    """
    if isinstance(value, Tensor):
        moved = value.detach().to(device)
        key = (tuple(moved.shape), moved.dtype)
        previous = shared.get(key)
        if previous is not None and torch.equal(previous, moved):
            return previous
        shared[key] = moved
        return moved
    if isinstance(value, (tuple, list)):
        return type(value)(_to_device(v, device, shared) for v in value)
    if isinstance(value, dict):
        return {k: _to_device(v, device, shared) for k, v in value.items()}
    return value


@contextmanager
def _outside_on(model: nn.Module, stack: nn.ModuleList, device: torch.device) -> Iterator[None]:
    """Put every weight outside the stack (embeddings, rotary tables, ...) on ``device`` for now.

    Tensors move in place (``.data``), as ``Module.to`` does, so tied weights
    stay tied; the stack itself stays where it is, so only its blocks ever
    need to fit on the device, one at a time.
    """
    inside = {id(t) for t in chain(stack.parameters(), stack.buffers())}
    outside = [t for t in chain(model.parameters(), model.buffers()) if id(t) not in inside]
    homes = [t.device for t in outside]
    for tensor in outside:
        tensor.data = tensor.data.to(device)
    try:
        yield
    finally:
        for tensor, home in zip(outside, homes, strict=True):
            tensor.data = tensor.data.to(home)


# -- step 2: one block -------------------------------------------------------------------


@dataclass
class _Walk:
    """What every block of one ``run_sequential`` call is calibrated with."""

    adapter: Adapter
    stack: nn.ModuleList
    names: dict[int, str]
    batches: list[BlockBatch]
    process_block: Callable[[BlockContext], None]
    collect: Collect
    device: torch.device
    #: Branch by branch where the adapter allows; set False once the first block says no.
    branch_wise: bool = False
    _checked: bool = False
    #: Blocks already compressed (by id): a block shared by two positions is compressed once.
    done: set[int] = field(default_factory=set)


def _calibrate_block(walk: _Walk, index: int) -> None:
    """Statistics, the method's change, then the changed block's outputs as the next inputs."""
    block = walk.stack[index]
    home = _device_of(block)
    block.to(walk.device)
    try:
        if id(block) in walk.done:  # shared with an earlier position: compressed there
            if index + 1 < len(walk.stack):
                _propagate(block, walk.batches)
            return
        walk.done.add(id(block))
        linears = _linears_in(block, walk.names)
        layer = _layer_parts(walk.adapter, index, block)
        branches = _branches(walk, layer, linears) if walk.branch_wise else None
        if branches is not None:
            _calibrate_by_branches(walk, index, layer, linears, branches)
            return
        ctx = _context(walk, index, layer, linears)
        ctx.stats = _gather_stats(block, linears, walk.batches, walk.collect, walk.device)
        walk.process_block(ctx)
        del ctx, linears  # modules the method replaced can be freed before the next pass
        if index + 1 < len(walk.stack):  # the last block's outputs feed nothing
            _propagate(walk.stack[index], walk.batches)
    finally:
        if home is not None:
            walk.stack[index].to(home)


def _context(walk: _Walk, index: int, layer: LayerParts, linears, stats=None) -> BlockContext:
    return BlockContext(
        index=index,
        layer=layer,
        block=walk.stack[index],
        linears=linears,
        stats=stats or {},
        device=walk.device,
        num_blocks=len(walk.stack),
        _batches=walk.batches,
    )


def _branches(walk: _Walk, layer: LayerParts, linears) -> list | None:
    """The block's residual branches, if they cover it and (checked once) reproduce it."""
    branches = walk.adapter.residual_branches(layer)
    if not usable_branches(branches, linears):
        return None
    if not walk._checked:
        walk._checked = True
        walk.branch_wise = branches_reproduce_block(layer.module, branches, walk.batches[0])
    return branches if walk.branch_wise else None


def _calibrate_by_branches(walk: _Walk, index: int, layer: LayerParts, linears, branches) -> None:
    def process(chosen, stats) -> None:
        walk.process_block(_context(walk, index, layer, chosen, stats))

    calibrate_branches(
        branches,
        linears,
        walk.batches,
        process,
        walk.collect,
        walk.device,
        propagate=index + 1 < len(walk.stack),
    )


def _linears_in(block: nn.Module, names: dict[int, str]) -> dict[str, nn.Linear]:
    prefix = names[id(block)]
    return {
        f"{prefix}.{name}": module
        for name, module in block.named_modules()
        if isinstance(module, nn.Linear)
    }


def _layer_parts(adapter: Adapter, index: int, block: nn.Module) -> LayerParts:
    """The adapter's parts for this block, re-read so earlier blocks' changes are seen."""
    layers = adapter.layers()
    return layers[index] if index < len(layers) else LayerParts(index=index, module=block)


def _gather_stats(
    block: nn.Module,
    linears: dict[str, nn.Linear],
    batches: list[BlockBatch],
    collect: Collect,
    device: torch.device,
) -> dict[str, LinearStats]:
    """Run the unchanged block over every batch with hooks on its linears.

    Only the linears' inputs matter here, so after the first batch each pass
    stops at the input of the block's last linear (see ``StatsRecorder.end_batch``).
    """
    recorder = StatsRecorder(linears, collect, device, compute_dtype=batches[0].compute_dtype)
    if not collect.any:
        return recorder.stats
    with torch.no_grad(), recorder:
        for batch in batches:
            recorder.token_mask = batch.mask
            with suppress(StopBlock):
                batch.run(block)
            recorder.end_batch()
    return recorder.stats


def _propagate(block: nn.Module, batches: list[BlockBatch]) -> None:
    """Replace each batch's inputs by the block's outputs, batch by batch.

    Each input is dropped as soon as its output exists, so the peak is one set
    of activations plus one batch, never two full sets.
    """
    with torch.no_grad(), reuse_float_weights():
        for batch in batches:
            batch.hidden = batch.run(block)


def _device_of(module: nn.Module) -> torch.device | None:
    first = next(chain(module.parameters(), module.buffers()), None)
    return None if first is None else first.device


def _release(device: torch.device) -> None:
    """Give memory freed by the last block back to the system.

    On CPU, glibc keeps freed heap pages mapped: without a trim, a long
    calibration's resident size creeps up block after block although the
    live working set stays one block's. Accelerators return their cached blocks.
    """
    if device.type == "cpu":
        _trim_heap()
        return
    empty_cache = getattr(getattr(torch, device.type, None), "empty_cache", None)
    if callable(empty_cache):
        empty_cache()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on other C libraries."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _trim_heap() -> None:
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Dropout off while calibrating; each module's own train/eval flag restored after.

    Flags are kept by module name, not by module: holding the modules would
    keep every layer a method replaces (and its float weights) alive to the end.
    A replacement takes the flag of the module it replaced.
    """
    modes = {name: module.training for name, module in model.named_modules()}
    model.eval()
    try:
        yield
    finally:
        for name, module in model.named_modules():
            if name in modes:
                module.training = modes[name]
