"""Branch-wise ("true sequential") calibration of one block: one pass instead of two.

The whole-block path of :func:`slimformer.calibration.engine.run_sequential` runs each
block twice over the calibration set: with the original weights to gather
every linear's statistics, then with the compressed weights to produce the
next block's inputs. When the model's adapter describes the block as pre-norm
residual branches (``h = h + output(inner(norm(h)))``, see
:class:`~slimformer.arch.base.ResidualBranch`), every linear's input can
instead be computed exactly once, in data order, from the linears before it
already compressed:

1. ``x = norm(h)`` is what the branch's input linears (q/k/v, gate/up) read:
   it feeds their statistics, and the method compresses them;
2. the branch runs on ``x`` up to its output linear (o, down), whose input is
   recorded and kept; the method compresses that linear;
3. ``h = h + output(kept)``, and the next branch starts from the new ``h``.

That is one block's forward pass of work instead of about 1.75, and later
linears are solved on the inputs the compressed earlier ones produce, as the
"true sequential" option of the GPTQ reference code does. Before relying on
the description, :func:`branches_reproduce_block` checks it on real inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import suppress

import torch
from torch import Tensor, nn

from slimformer.arch.base import ResidualBranch
from slimformer.calibration.batch import BlockBatch
from slimformer.calibration.stats import Collect, LinearStats, StatsRecorder
from slimformer.errors import SlimformerError
from slimformer.nn.registry import reuse_float_weights

#: Called with the linears to compress now (by qualified name) and their statistics.
Process = Callable[[dict[str, nn.Linear], dict[str, LinearStats]], None]


class _Reached(Exception):
    """Raised at the output linear's input: the rest of the branch is not needed."""


def usable_branches(
    branches: Sequence[ResidualBranch] | None, linears: dict[str, nn.Linear]
) -> bool:
    """Whether ``branches`` account for every linear of the block (else run it whole)."""
    if not branches:
        return False
    covered = {id(m) for branch in branches for m in (*branch.inputs, branch.output)}
    return all(id(linear) in covered for linear in linears.values())


def branches_reproduce_block(
    block: nn.Module, branches: Sequence[ResidualBranch], batch: BlockBatch
) -> bool:
    """Whether walking ``branches`` gives the block's own output on ``batch``.

    A guard against an adapter whose description does not match the model's
    forward (a parallel attention/MLP block, say): one extra batch of work.
    """
    with torch.no_grad():
        expected = batch.run(block)
        hidden = batch.hidden
        with batch.autocast():
            for branch in branches:
                out = branch.call(branch.module, branch.norm(hidden), batch.kwargs)
                hidden = hidden + (out if isinstance(out, Tensor) else out[0])
    hidden = hidden.to(expected.dtype)
    return hidden.shape == expected.shape and torch.allclose(hidden, expected, rtol=1e-4, atol=1e-5)


def calibrate_branches(
    branches: Sequence[ResidualBranch],
    linears: dict[str, nn.Linear],
    batches: list[BlockBatch],
    process: Process,
    collect: Collect,
    device: torch.device,
    propagate: bool,
) -> None:
    """Compress the block branch by branch; ``batches`` then hold its outputs.

    ``propagate=False`` (the last block) skips the final residual update,
    whose result nothing reads.
    """
    names = {id(module): name for name, module in linears.items()}
    for position, branch in enumerate(branches):
        inputs = [names[id(m)] for m in branch.inputs if id(m) in names]
        if inputs:
            process(*_input_stats(branch, inputs, linears, batches, collect, device))
        output = [names[id(branch.output)]] if id(branch.output) in names else []
        kept, stats = _run_to_output(branch, output, linears, batches, collect, device)
        if output:
            process({output[0]: linears[output[0]]}, stats)
        if propagate or position + 1 < len(branches):
            _add_branch_output(branch, batches, kept)


def _input_stats(branch, inputs, linears, batches, collect, device):
    """Statistics of ``norm(h)``, the one input the branch's input linears share."""
    chosen = {name: linears[name] for name in inputs}
    recorder = StatsRecorder(chosen, collect, device, compute_dtype=batches[0].compute_dtype)
    with torch.no_grad():
        for batch in batches:
            recorder.token_mask = batch.mask
            with batch.autocast():
                recorder.feed(inputs, branch.norm(batch.hidden))
    for stats in recorder.stats.values():
        stats.flush()
    return chosen, recorder.stats


def _run_to_output(branch, output, linears, batches, collect, device):
    """Run the branch up to its output linear on every batch; keep what that linear reads."""
    chosen = {name: linears[name] for name in output}
    recorder = StatsRecorder(chosen, collect, device, compute_dtype=batches[0].compute_dtype)
    kept: list[Tensor] = []

    def capture(module: nn.Module, args: tuple, kwargs: dict) -> None:
        kept.append(args[0] if args else next(iter(kwargs.values())))
        raise _Reached

    with torch.no_grad(), reuse_float_weights(), recorder:
        handle = branch.output.register_forward_pre_hook(capture, with_kwargs=True)
        try:
            for count, batch in enumerate(batches, start=1):
                recorder.token_mask = batch.mask
                with batch.autocast(), suppress(_Reached):
                    branch.call(branch.module, branch.norm(batch.hidden), batch.kwargs)
                if len(kept) != count:
                    raise SlimformerError(
                        f"{type(branch.module).__name__} never called its output linear",
                        "run with true_sequential=False (the adapter's branches are wrong)",
                    )
        finally:
            handle.remove()
    return kept, recorder.stats


def _add_branch_output(
    branch: ResidualBranch, batches: list[BlockBatch], kept: list[Tensor]
) -> None:
    """``h = h + output(kept)`` per batch, each kept input freed once used."""
    with torch.no_grad(), reuse_float_weights():
        for index, batch in enumerate(batches):
            with batch.autocast():
                out = branch.output(kept[index])
            batch.hidden = (batch.hidden + out).to(batch.hidden.dtype)
            kept[index] = None  # type: ignore[call-overload]
