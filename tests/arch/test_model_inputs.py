"""The model-input seam: adapters make every input and name the task; nothing else builds ids."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import (
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    LlamaModel,
)

import slimformer.arch
from slimformer import runtime
from slimformer.arch import Adapter, get_adapter
from slimformer.arch.task import task_from_class_name
from slimformer.calibration.engine import BlockContext, Collect, run_sequential
from slimformer.errors import SlimformerError
from slimformer.evaluate.latency import make_inputs
from slimformer.evaluate.measure import measure_model
from slimformer.model import SlimModel, task_of
from slimformer.pipeline import warm_up
from tiny_models import tiny_model

VOCAB = 1500


# Small models; the Llama and GPT-2 keep transformers' default context length and untied head.
BERT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "max_position_embeddings": 64,
}
LLAMA = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
}
GPT2 = {"n_embd": 32, "n_head": 2, "n_positions": 1024}


def _bert(cls=BertModel, **extra):
    return tiny_model("bert", VOCAB, model_class=cls, **{**BERT, **extra}).eval()


def _llama(cls=LlamaForCausalLM, **extra):
    return tiny_model("llama", VOCAB, model_class=cls, **{**LLAMA, **extra}).eval()


def _gpt2(cls=GPT2LMHeadModel, **extra):
    return tiny_model("gpt2", VOCAB, model_class=cls, **{**GPT2, **extra}).eval()


class Decoder(LlamaForCausalLM):
    """A causal LM whose class name says nothing about its task."""


class Stack(nn.Module):
    """No config, no family."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(4, 4) for _ in range(2))


class PlainForCausalLM(Stack):
    """No config either: the class name is all there is to read."""


# -- task --------------------------------------------------------------------------


TASK_CASES = [
    (lambda: _bert(), "embedding"),
    (lambda: _bert(BertForSequenceClassification, num_labels=3), "classification"),
    (lambda: _bert(BertForMaskedLM), "embedding"),
    (lambda: _llama(), "causal-lm"),
    (lambda: _llama(LlamaModel), "embedding"),
    (lambda: _llama(LlamaForSequenceClassification, num_labels=2), "classification"),
    (lambda: _gpt2(GPT2ForSequenceClassification, num_labels=4), "classification"),
    (Stack, "embedding"),
    (PlainForCausalLM, "causal-lm"),
]


@pytest.mark.parametrize(("build", "task"), TASK_CASES)
def test_task_is_read_from_the_model_and_agrees_with_the_class_name(build, task):
    model = build()
    assert get_adapter(model).task == task
    assert task_of(model) == task
    assert task_from_class_name(model) == task  # the old rule gives the same answers


@pytest.mark.parametrize("build", [lambda: _llama(Decoder), lambda: _gpt2()])
def test_task_does_not_depend_on_the_class_name(build):
    """A causal LM not named ``...ForCausalLM`` (GPT-2's ``GPT2LMHeadModel``) is one."""
    model = build()
    assert task_from_class_name(model) == "embedding"
    assert get_adapter(model).task == "causal-lm"


def test_slim_model_task_comes_from_the_adapter_unless_given():
    model = _bert(BertForSequenceClassification, num_labels=3)
    assert SlimModel(model, None, "m", "x").task == "classification"
    assert SlimModel(model, None, "m", "x", task="embedding").task == "embedding"


# -- text inputs -------------------------------------------------------------------


@pytest.mark.parametrize("build", [_bert, _llama, _gpt2, lambda: Stack()])
def test_example_inputs_are_todays_latency_inputs(build):
    model = build()
    adapter = get_adapter(model)
    if not hasattr(model, "config"):
        with pytest.raises(SlimformerError, match="vocabulary size"):
            adapter.example_inputs(2, 8)
        return
    inputs = adapter.example_inputs(3, 9, seed=5)
    expected = make_inputs(VOCAB, 3, 9, seed=5)
    assert inputs.keys() == expected.keys()
    for name in inputs:
        assert torch.equal(inputs[name], expected[name])
    assert int(inputs["input_ids"].max()) < VOCAB
    assert not torch.equal(inputs["input_ids"], adapter.example_inputs(3, 9)["input_ids"])


def test_calibration_inputs_follow_the_forward_signature():
    ids, mask = torch.ones(2, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.long)
    llama = get_adapter(_llama()).calibration_inputs(ids, mask)
    assert set(llama) == {"input_ids", "attention_mask", "use_cache"}
    assert llama["use_cache"] is False

    class IdsOnly(nn.Module):
        def forward(self, tokens):
            return tokens

    assert Adapter(IdsOnly()).calibration_inputs(ids, mask) == {"tokens": ids}


# -- a model fed something else ------------------------------------------------------


class EmbedsModel(nn.Module):
    """Reads ``inputs_embeds`` scaled by an extra ``gain`` tensor; no token ids at all."""

    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.hidden = hidden
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh()) for _ in range(2)
        )

    def forward(self, inputs_embeds, gain, attention_mask=None):
        h = inputs_embeds * gain
        for layer in self.layers:
            h = layer(h)
        if attention_mask is not None:
            h = h * attention_mask[..., None]
        return h


class EmbedsAdapter(Adapter):
    """The adapter that lets the embeddings model in: it alone knows what the model reads."""

    family = "embeds"

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return isinstance(model, EmbedsModel)

    def sequence_inputs(self) -> tuple[str, ...]:
        return ("inputs_embeds", "gain", "attention_mask")

    def example_inputs(self, batch, seq_len, *, seed=0, device="cpu"):
        generator = torch.Generator().manual_seed(seed)
        embeds = torch.randn(batch, seq_len, self.model.hidden, generator=generator)
        gain = torch.full((batch, seq_len, 1), 2.0)
        return {"inputs_embeds": embeds.to(device), "gain": gain.to(device)}


@pytest.fixture()
def embeds_family(monkeypatch):
    monkeypatch.setattr(slimformer.arch, "_ADAPTERS", [EmbedsAdapter, *slimformer.arch._ADAPTERS])


def _first_block_inputs(store):
    """A process_block that changes nothing and keeps what the first block saw."""

    def process(ctx: BlockContext) -> None:
        if ctx.index == 0:
            store["hidden"] = torch.cat([h.flatten(0, 1) for h in ctx.inputs])
            store["masks"] = ctx.token_masks
            store["rows"] = next(iter(ctx.stats.values())).tokens if ctx.stats else None

    return process


def test_a_model_fed_embeddings_calibrates_through_its_adapter(embeds_family):
    slim = SlimModel(EmbedsModel(), None, "embeds", "memory")
    assert isinstance(slim.adapter, EmbedsAdapter)
    inputs = slim.adapter.example_inputs(3, 5)
    store: dict = {}
    collect = Collect(xtx=True)
    run_sequential(slim, inputs, _first_block_inputs(store), collect=collect, batch_size=2)
    torch.testing.assert_close(store["hidden"], (inputs["inputs_embeds"] * 2.0).flatten(0, 1))
    assert store["masks"] == [None, None]
    assert store["rows"] == 3 * 5


def test_named_inputs_per_batch_carry_their_token_mask(embeds_family):
    slim = SlimModel(EmbedsModel(), None, "embeds", "memory")
    first, second = slim.adapter.example_inputs(2, 4), slim.adapter.example_inputs(1, 4, seed=1)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    batches = [{**first, "attention_mask": mask}, second]
    store: dict = {}
    run_sequential(slim, batches, _first_block_inputs(store), collect=Collect(xtx=True))
    assert torch.equal(store["masks"][0], mask.bool())
    assert store["masks"][1] is None
    assert store["rows"] == 7 + 4  # padded position left out of the statistics


def test_named_inputs_must_share_a_batch_dimension():
    bad = {"inputs_embeds": torch.zeros(2, 3, 8), "gain": torch.zeros(3, 3, 1)}
    with pytest.raises(SlimformerError, match="batch dimension"):
        run_sequential(EmbedsModel(), bad, lambda ctx: None)


def test_a_model_fed_embeddings_is_measured_and_warmed_up(embeds_family):
    model = EmbedsModel()
    measured = measure_model(model, shapes=[(2, 4)], runs=2, warmup=0, energy_calls=1)
    assert measured.latency[0].batch == 2 and measured.latency[0].seq_len == 4
    warm_up(SlimModel(model, None, "embeds", "memory"), [(1, 3)], threads=None)


def test_calibration_by_named_batches_matches_token_ids():
    """The dict-per-batch form is the token form with the inputs already made."""
    ids = torch.randint(1000, VOCAB, (3, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    slim = SlimModel(_llama(), None, "llama", "memory")
    by_ids: dict = {}
    run_sequential(slim, (ids, mask), _first_block_inputs(by_ids), batch_size=2)
    named = [{"input_ids": ids[:2], "attention_mask": mask[:2]}, {"input_ids": ids[2:]}]
    by_name: dict = {}
    run_sequential(slim, named, _first_block_inputs(by_name))
    torch.testing.assert_close(by_name["hidden"], by_ids["hidden"])
    assert torch.equal(by_name["masks"][0], by_ids["masks"][0])


# -- bucketing -----------------------------------------------------------------------


def test_bucketing_pads_every_sequence_input_the_adapter_names():
    model = EmbedsModel()
    inputs = EmbedsAdapter(model).example_inputs(3, 5)
    names = EmbedsAdapter(model).sequence_inputs()
    assert runtime._paddable(inputs, names)
    assert not runtime._paddable(inputs)  # the text default does not know these inputs
    padded = runtime._pad_inputs(inputs, 4, 32, names)
    assert padded["inputs_embeds"].shape == (4, 32, 8)
    assert padded["gain"].shape == (4, 32, 1)
    assert padded["attention_mask"].sum() == 3 * 5  # made, and the padding masked out

    model.eval()
    runner = runtime.make_runner(model, "compile", names)
    runner._compiled = model  # the bucketing path, without paying for a compilation
    with torch.no_grad():
        torch.testing.assert_close(runner(**inputs), model(**inputs))


def test_slim_model_runner_buckets_by_its_adapter(embeds_family):
    slim = SlimModel(EmbedsModel(), None, "embeds", "memory", runtime="compile")
    assert slim.runner.sequence_inputs == EmbedsAdapter.sequence_inputs(slim.adapter)
