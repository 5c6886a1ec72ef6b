"""The sequential calibration engine: replayed block inputs, per-linear statistics, propagation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimformer.calibration.engine import BlockContext, Collect, run_sequential
from slimformer.errors import SlimformerError
from slimformer.serialization import load_model_dir

ALL_STATS = Collect(xtx=True, abs_mean=True, abs_max=True, sq_norm=True, dtype=torch.float64)


def _load(folder):
    return load_model_dir(folder)


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    return _load(tiny_llama_dir)


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    return _load(tiny_bert_dir)


def _windows(n: int = 3, length: int = 12, pad: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and a mask whose second window ends in ``pad`` padding positions."""
    ids = torch.randint(1000, 2000, (n, length), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, length - pad :] = 0
    return ids, mask


def _record(store: dict):
    """A process_block that changes nothing and keeps each block's inputs and outputs."""

    def process(ctx: BlockContext) -> None:
        store[ctx.index] = (torch.cat(ctx.inputs), torch.cat(ctx.forward()), ctx.stats)

    return process


def _inputs_of(model: nn.Module, module: nn.Module, ids, mask) -> torch.Tensor:
    """What ``module`` reads in the full model's own forward pass."""
    seen = []
    handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    handle.remove()
    return seen[0]


def _final_norm(slim) -> nn.Module | None:
    base = getattr(slim.model, "model", None)
    return getattr(base, "norm", None)


@pytest.mark.parametrize("name", ["llama", "bert", "bert_cls"])
def test_unchanged_blocks_reproduce_the_models_hidden_states(name, llama, bert, tiny_bert_cls_dir):
    """Padded masks and rotary embeddings are replayed exactly as the model passes them."""
    slim = {"llama": llama, "bert": bert}.get(name) or _load(tiny_bert_cls_dir)
    ids, mask = _windows()
    seen: dict = {}
    run_sequential(slim, (ids, mask), _record(seen), batch_size=2, progress=False)
    with torch.no_grad():
        hidden = slim.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    hidden = hidden.hidden_states
    blocks = len(slim.adapter.layer_stack())
    for i in range(blocks):
        torch.testing.assert_close(seen[i][0], hidden[i], atol=1e-5, rtol=0)
    norm = _final_norm(slim)
    final = hidden[-1] if norm is None else _inputs_of(slim.model, norm, ids, mask)
    torch.testing.assert_close(seen[blocks - 1][1], final, atol=1e-5, rtol=0)


def test_train_mode_is_turned_off_and_restored(tiny_bert_cls_dir):
    slim = _load(tiny_bert_cls_dir)
    slim.model.train()
    ids, _ = _windows()
    seen: dict = {}
    run_sequential(slim, ids, _record(seen), progress=False)
    assert slim.model.training and slim.model.bert.encoder.layer[0].training
    slim.model.eval()
    with torch.no_grad():
        hidden = slim.model(input_ids=ids, output_hidden_states=True).hidden_states
    torch.testing.assert_close(seen[1][1], hidden[-1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("block", [0, 1])
def test_statistics_match_hand_computation_over_real_tokens(llama, block):
    ids, mask = _windows()
    seen: dict = {}
    run_sequential(
        llama, (ids, mask), _record(seen), collect=ALL_STATS, batch_size=2, progress=False
    )
    name = f"model.layers.{block}.mlp.down_proj"
    linear = llama.model.get_submodule(name)
    x = _inputs_of(llama.model, linear, ids, mask)[mask.bool()].double()
    stats = seen[block][2][name]
    assert stats.tokens == int(mask.sum()) == 3 * 12 - 4
    torch.testing.assert_close(stats.xtx, x.T @ x, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(stats.hessian(), 2 * x.T @ x / x.shape[0], rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(stats.abs_mean, x.abs().mean(0), rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(stats.abs_max, x.abs().amax(0), rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(stats.sq_norm, x.square().sum(0), rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(stats.l2_norm(), x.norm(dim=0), rtol=1e-5, atol=1e-8)


def test_stats_are_named_by_qualified_name_and_default_to_float32(bert):
    names: dict[int, list[str]] = {}

    def process(ctx: BlockContext) -> None:
        names[ctx.index] = sorted(ctx.stats)
        assert ctx.stats.keys() == ctx.linears.keys()
        assert all(s.xtx.dtype == torch.float32 and s.abs_max is None for s in ctx.stats.values())
        assert ctx.linears["encoder.layer.0.attention.self.query".replace("0", str(ctx.index))] is (
            ctx.layer.attention.q
        )

    run_sequential(bert, _windows()[0], process, collect=Collect(xtx=True), progress=False)
    assert names[1] == sorted(
        f"encoder.layer.1.{n}"
        for n in (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
            "intermediate.dense",
            "output.dense",
        )
    )


def test_uncollected_statistic_names_the_missing_option(llama):
    def process(ctx: BlockContext) -> None:
        stats = next(iter(ctx.stats.values()))
        with pytest.raises(SlimformerError, match="xtx=True"):
            stats.hessian()

    run_sequential(llama, _windows()[0][:1], process, collect=Collect(abs_max=True), progress=False)


def test_keep_inputs_keeps_the_real_tokens(llama):
    ids, mask = _windows()
    kept = {}

    def process(ctx: BlockContext) -> None:
        if ctx.index == 0:
            kept.update(ctx.stats)

    run_sequential(llama, (ids, mask), process, collect=Collect(keep_inputs=True), progress=False)
    name = "model.layers.0.self_attn.o_proj"
    expected = _inputs_of(llama.model, llama.model.get_submodule(name), ids, mask)[mask.bool()]
    torch.testing.assert_close(torch.cat(kept[name].inputs), expected, atol=1e-5, rtol=0)


class _Zero(nn.Module):
    """Stands in for a compressed module: same interface as the linear it replaces."""

    def __init__(self, out_features: int) -> None:
        super().__init__()
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(*x.shape[:-1], self.out_features)


def test_changes_in_one_block_reach_the_next(tiny_llama_dir):
    slim = _load(tiny_llama_dir)
    ids, mask = _windows()
    collect = Collect(xtx=True, dtype=torch.float64)
    name = "model.layers.1.self_attn.q_proj"
    before: dict = {}
    run_sequential(slim, (ids, mask), _record(before), collect=collect, progress=False)
    after: dict = {}

    def zero_mlp_of_block_0(ctx: BlockContext) -> None:
        if ctx.index == 0:
            ctx.layer.module.mlp.down_proj = _Zero(ctx.layer.mlp.down.out_features)
        _record(after)(ctx)

    run_sequential(slim, (ids, mask), zero_mlp_of_block_0, collect=collect, progress=False)
    assert not torch.allclose(after[1][2][name].xtx, before[1][2][name].xtx)
    # The changed block stays in the model, and what block 1 saw is what the model now feeds it.
    assert isinstance(slim.adapter.layers()[0].mlp.down, _Zero)
    x = _inputs_of(slim.model, slim.model.get_submodule(name), ids, mask)[mask.bool()].double()
    torch.testing.assert_close(after[1][2][name].xtx, x.T @ x, rtol=1e-5, atol=1e-8)


def test_forward_keeps_the_shapes_of_the_stored_inputs(llama):
    ids = _windows(n=5)[0]

    def process(ctx: BlockContext) -> None:
        outputs = ctx.forward()
        assert (
            [o.shape for o in outputs]
            == [i.shape for i in ctx.inputs]
            == [(2, 12, 64)] * 2 + [(1, 12, 64)]
        )
        assert ctx.num_blocks == 2 and ctx.device == torch.device("cpu")
        doubled = ctx.forward([2 * i for i in ctx.inputs])
        assert not torch.allclose(doubled[0], outputs[0])
        with pytest.raises(SlimformerError, match="one tensor per batch"):
            ctx.forward(ctx.inputs[:1])

    run_sequential(llama, ids, process, batch_size=2, progress=False)


def test_model_weights_stay_where_they_were(llama):
    run_sequential(llama, _windows()[0], lambda ctx: None, progress=False)
    assert {p.device.type for p in llama.model.parameters()} == {"cpu"}


class _Toy(nn.Module):
    """No config and no family: an embedding and a ModuleList of MLP blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8)) for _ in range(3)
        )

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(input_ids)
        for block in self.blocks:
            hidden = block(hidden)
        return hidden


def test_generic_models_with_a_layer_stack_work():
    torch.manual_seed(0)
    toy = _Toy()
    ids = torch.randint(0, 50, (4, 6))
    seen: dict = {}
    run_sequential(toy, ids, _record(seen), collect=Collect(abs_max=True), progress=False)
    with torch.no_grad():
        expected = toy(ids)
    torch.testing.assert_close(seen[2][1], expected)
    assert seen[0][2]["blocks.0.2"].tokens == 24


@pytest.mark.parametrize(
    "calibration",
    [
        torch.zeros(0, 8, dtype=torch.long),
        torch.zeros(8, dtype=torch.long),
        torch.zeros(2, 3, 4, dtype=torch.long),
        (torch.zeros(2, 8, dtype=torch.long), torch.ones(2, 7, dtype=torch.long)),
    ],
    ids=["empty", "1-d", "3-d", "mask-shape"],
)
def test_bad_calibration_is_a_user_error(llama, calibration):
    with pytest.raises(SlimformerError, match="calibration"):
        run_sequential(llama, calibration, lambda ctx: None, progress=False)


def test_bad_batch_size_is_a_user_error(llama):
    with pytest.raises(SlimformerError, match="batch_size"):
        run_sequential(llama, _windows()[0], lambda ctx: None, batch_size=0, progress=False)


def test_model_without_a_layer_stack_is_a_user_error():
    with pytest.raises(SlimformerError, match="stack of layers"):
        run_sequential(nn.Linear(4, 4), torch.ones(1, 4, dtype=torch.long), lambda ctx: None)


def test_linears_reading_one_input_share_one_accumulator(tiny_llama_dir, minilm_tokenizer):
    """q/k/v (and gate/up) read the same tensor: their statistics are gathered once."""
    import slimformer
    from slimformer.calibration.engine import Collect, run_sequential

    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    windows = slimformer.calibration_windows(minilm_tokenizer, "wiki", n=3, length=16)
    seen = {}

    def keep(block):
        seen.update(block.stats)

    run_sequential(slim, windows, keep, collect=Collect(xtx=True), progress=False)
    layer = "model.layers.1"
    assert seen[f"{layer}.self_attn.q_proj"] is seen[f"{layer}.self_attn.k_proj"]
    assert seen[f"{layer}.self_attn.q_proj"] is seen[f"{layer}.self_attn.v_proj"]
    assert seen[f"{layer}.mlp.gate_proj"] is seen[f"{layer}.mlp.up_proj"]
    assert seen[f"{layer}.self_attn.o_proj"] is not seen[f"{layer}.self_attn.q_proj"]
    assert seen[f"{layer}.mlp.down_proj"] is not seen[f"{layer}.mlp.up_proj"]
    assert seen[f"{layer}.self_attn.q_proj"].tokens == 3 * 16


def test_bf16_passes_stay_close_and_accumulate_in_float32(tiny_llama_dir, minilm_tokenizer):
    import slimformer
    from slimformer.calibration.engine import Collect, run_sequential

    windows = slimformer.calibration_windows(minilm_tokenizer, "wiki", n=2, length=16)
    hessians = {}
    for dtype in (None, torch.bfloat16):
        slim = slimformer.load(tiny_llama_dir, runtime="eager")

        def keep(block, dtype=dtype):
            name = f"model.layers.{block.index}.mlp.down_proj"
            hessians[(dtype, block.index)] = block.stats[name].hessian()

        run_sequential(
            slim, windows, keep, collect=Collect(xtx=True), compute_dtype=dtype, progress=False
        )
    full, half = hessians[(None, 1)], hessians[(torch.bfloat16, 1)]
    assert half.dtype == torch.float32
    assert torch.allclose(half, full, rtol=0.1, atol=0.05 * full.abs().max().item())
