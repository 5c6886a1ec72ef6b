"""Branch-wise ("true sequential") calibration: same statistics, one pass, data order."""

from __future__ import annotations

import pytest
import torch
from test_calibrate import _windows
from torch import nn

from slimformer import GPTQ, quantize_
from slimformer.arch.base import ResidualBranch
from slimformer.calibration.engine import BlockContext, Collect, run_sequential
from slimformer.serialization import load_model_dir

STATS = Collect(xtx=True, abs_mean=True, sq_norm=True, dtype=torch.float64)


def _collect(seen: list):
    """A process_block that changes nothing and records every call's linears and stats."""

    def process(ctx: BlockContext) -> None:
        seen.append((ctx.index, sorted(ctx.linears), dict(ctx.stats)))

    return process


def _by_name(calls: list) -> dict:
    return {name: stats for _, _, all_stats in calls for name, stats in all_stats.items()}


@pytest.mark.parametrize("compute_dtype", [None, torch.bfloat16])
def test_unchanged_model_gets_the_same_statistics_either_way(tiny_llama_dir, compute_dtype):
    slim = load_model_dir(tiny_llama_dir)
    whole: list = []
    branch: list = []
    for seen, true_sequential in ((whole, False), (branch, True)):
        run_sequential(
            slim,
            _windows(),
            _collect(seen),
            collect=STATS,
            batch_size=2,
            compute_dtype=compute_dtype,
            true_sequential=true_sequential,
            progress=False,
        )
    assert len(whole) == 2 and len(branch) == 2 * 4  # four groups per block, in data order
    assert [names[0].rsplit(".", 1)[1] for _, names, _ in branch[:4]] == [
        "k_proj",
        "o_proj",
        "gate_proj",
        "down_proj",
    ]
    expected, got = _by_name(whole), _by_name(branch)
    assert set(expected) == set(got)
    for name, stats in expected.items():
        assert got[name].tokens == stats.tokens == 3 * 12 - 4
        torch.testing.assert_close(got[name].xtx, stats.xtx, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got[name].abs_sum, stats.abs_sum, rtol=1e-5, atol=1e-6)


def test_later_linears_see_the_inputs_the_changed_ones_produce(tiny_llama_dir):
    slim = load_model_dir(tiny_llama_dir)
    ids, mask = _windows()
    seen: list = []

    def zero_o_then_record(ctx: BlockContext) -> None:
        for name, linear in ctx.linears.items():
            if name.endswith("o_proj"):
                linear.weight.data.zero_()
        seen.append((ctx.index, sorted(ctx.linears), dict(ctx.stats)))

    run_sequential(
        slim,
        (ids, mask),
        zero_o_then_record,
        collect=STATS,
        true_sequential=True,
        progress=False,
    )
    # With o zeroed, block 0's MLP reads norm(h) of its own input: check against the model.
    name = "model.layers.0.mlp.gate_proj"
    seen_inputs = []
    module = slim.model.get_submodule(name)
    handle = module.register_forward_pre_hook(lambda m, args: seen_inputs.append(args[0]))
    with torch.no_grad():
        slim.model(input_ids=ids, attention_mask=mask)
    handle.remove()
    x = seen_inputs[0][mask.bool()].double()
    torch.testing.assert_close(_by_name(seen)[name].xtx, x.T @ x, rtol=1e-5, atol=1e-8)


def test_a_description_that_does_not_match_the_block_falls_back(tiny_llama_dir, monkeypatch):
    slim = load_model_dir(tiny_llama_dir)
    adapter = type(slim.adapter)
    real = adapter.residual_branches

    def wrong(self, layer) -> list[ResidualBranch]:
        attention, mlp = real(self, layer)
        return [mlp, attention]  # the MLP first: not what the block computes

    monkeypatch.setattr(adapter, "residual_branches", wrong)
    seen: list = []
    run_sequential(
        slim, _windows(), _collect(seen), collect=STATS, true_sequential=True, progress=False
    )
    assert len(seen) == 2  # whole blocks


def test_gptq_true_sequential_is_the_default_and_close_to_whole_blocks(tiny_llama_dir):
    ids = _windows(n=6, length=16, pad=0)[0]
    with torch.no_grad():
        reference = load_model_dir(tiny_llama_dir).model(input_ids=ids).logits
    errors = {}
    for true_sequential in (True, False):
        slim = load_model_dir(tiny_llama_dir)
        config = GPTQ(bits=4, group_size=32, true_sequential=true_sequential)
        quantize_(slim, config, calibration=ids, progress=False)
        with torch.no_grad():
            errors[true_sequential] = (slim.model(input_ids=ids).logits - reference).norm()
    assert GPTQ().true_sequential
    assert errors[True] < 1.5 * errors[False]  # the same algorithm on nearly the same inputs
    assert errors[True] > 0


def test_version_1_recipes_keep_solving_whole_blocks():
    assert GPTQ(version=1).true_sequential is False
    assert GPTQ(version=1, true_sequential=True).true_sequential is True
    assert GPTQ().version == 2


def test_generic_blocks_without_branches_run_whole():
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(50, 8)
            self.layers = nn.ModuleList([Block(), Block()])

        def forward(self, ids):
            h = self.embed(ids)
            for layer in self.layers:
                h = layer(h)
            return h

    seen: list = []
    run_sequential(
        Net(), torch.randint(0, 50, (2, 5)), _collect(seen), true_sequential=True, progress=False
    )
    assert len(seen) == 2


@pytest.mark.parametrize("true_sequential", [True, False])
def test_replaced_layers_are_freed_as_the_walk_goes(tiny_llama_dir, true_sequential):
    """Nothing may hold an earlier block's replaced layers: their weights would stay resident."""
    import gc
    import weakref

    from slimformer.nn import replace_module

    slim = load_model_dir(tiny_llama_dir)
    replaced: list = []
    alive_after: list[int] = []

    def replace(ctx: BlockContext) -> None:
        earlier = [ref for index, ref in replaced if index < ctx.index]
        alive_after.append(sum(ref() is not None for ref in earlier))
        for name, linear in ctx.linears.items():
            replaced.append((ctx.index, weakref.ref(linear)))
            copy = nn.Linear(linear.in_features, linear.out_features, bias=False)
            replace_module(slim.model, name, copy)

    gc.disable()  # freed by reference counting alone, not whenever a collection runs
    try:
        run_sequential(
            slim,
            _windows(),
            replace,
            collect=STATS,
            true_sequential=true_sequential,
            progress=False,
        )
    finally:
        gc.enable()
    assert len(replaced) == 2 * 7 and max(alive_after) == 0
