"""Calibrated stages of one run share token windows and the first block's inputs.

Sharing must be invisible in the result: every test compares against the
same stages run without a session, bit for bit, and counts the work that
sharing saves (tokenizer runs, prefix runs through the embedding).
"""

from __future__ import annotations

import pytest
import torch

import slimformer
import slimformer.calibration.spec as spec_module
from slimformer.calibration import CalibrationSpec
from slimformer.calibration.session import CalibrationSession
from slimformer.methods.apply import apply_method
from slimformer.methods.base import StageContext
from slimformer.nn import SparseLinear, WeightOnlyLinear, compressed_modules
from slimformer.pipeline import MeasureOptions

SAMPLES = 4


@pytest.fixture()
def spec(tiny_txt) -> CalibrationSpec:
    return CalibrationSpec(dataset=str(tiny_txt), samples=SAMPLES, length=32)


@pytest.fixture()
def tokenizations(monkeypatch) -> list[int]:
    """One entry each time calibration text is tokenized into windows."""
    calls: list[int] = []
    real = spec_module.calibration_windows

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(spec_module, "calibration_windows", counting)
    return calls


def _prefix_runs(slim) -> list[int]:
    """One entry per calibration window that went through the model's embedding."""
    runs: list[int] = []
    slim.model.get_input_embeddings().register_forward_hook(
        lambda module, args, out: runs.append(args[0].shape[0])
    )
    return runs


def _stages(spec):
    """SparseGPT on the MLPs, then GPTQ on attention: calibrated quantizers refuse pruned layers."""
    return [
        slimformer.SparseGPT(sparsity=0.5, parts=["mlp"], calibration=spec),
        slimformer.GPTQ(bits=4, group_size=16, parts=["attention"], calibration=spec),
    ]


def _run(folder, stages, *, shared: bool, between=None):
    slim = slimformer.load(folder, runtime="eager")
    runs = _prefix_runs(slim)
    context = StageContext(progress=False)
    if not shared:
        context.calibration_session = None
    for index, stage in enumerate(stages):
        if index and between is not None:
            between(slim)
        apply_method(slim, stage, context=context)
    return slim, context.calibration_session, runs


def _assert_same_model(a, b) -> None:
    left, right = a.model.state_dict(), b.model.state_dict()
    assert left.keys() == right.keys()
    for name, tensor in left.items():
        assert torch.equal(tensor, right[name]), name


def test_second_stage_reuses_windows_and_prefix_and_matches_unshared(
    tiny_llama_dir, spec, tokenizations
):
    shared, session, runs = _run(tiny_llama_dir, _stages(spec), shared=True)
    assert len(tokenizations) == 1 and session.tokenized == 1 and session.reused_windows == 1
    assert sum(runs) == SAMPLES and session.captured == 1 and session.reused_captures == 1
    kinds = {type(m) for m in compressed_modules(shared.model).values()}
    assert kinds == {SparseLinear, WeightOnlyLinear}  # both stages did their work

    tokenizations.clear()
    alone, _, alone_runs = _run(tiny_llama_dir, _stages(spec), shared=False)
    assert len(tokenizations) == 2 and sum(alone_runs) == 2 * SAMPLES
    _assert_same_model(shared, alone)


def test_wanda_then_awq_share_one_prefix_run(tiny_llama_dir, spec, tokenizations):
    stages = [
        slimformer.Wanda(sparsity=0.5, parts=["attention"], calibration=spec),
        slimformer.AWQ(bits=4, group_size=16, parts=["mlp"], calibration=spec),
    ]
    shared, session, runs = _run(tiny_llama_dir, stages, shared=True)
    assert len(tokenizations) == 1 and sum(runs) == SAMPLES and session.reused_captures == 1
    alone, _, _ = _run(tiny_llama_dir, stages, shared=False)
    _assert_same_model(shared, alone)


@pytest.mark.parametrize("through_data", [True, False], ids=["data-write", "in-place"])
def test_a_changed_embedding_forces_a_recapture(tiny_llama_dir, spec, through_data):
    def nudge(slim) -> None:
        weight = slim.model.get_input_embeddings().weight
        with torch.no_grad():
            # A write through .data leaves the version counter as it was: values must be read.
            (weight.data if through_data else weight).mul_(1.5)

    shared, session, runs = _run(tiny_llama_dir, _stages(spec), shared=True, between=nudge)
    assert session.captured == 2 and session.reused_captures == 0 and sum(runs) == 2 * SAMPLES
    assert session.reused_windows == 1  # the text is the same, only the prefix changed
    alone, _, _ = _run(tiny_llama_dir, _stages(spec), shared=False, between=nudge)
    _assert_same_model(shared, alone)


def test_a_replaced_outside_module_forces_a_recapture(tiny_llama_dir, spec):
    def swap_embedding(slim) -> None:
        old = slim.model.get_input_embeddings()
        new = torch.nn.Embedding.from_pretrained(old.weight.detach().clone(), freeze=False)
        slim.model.set_input_embeddings(new)

    _, session, _ = _run(tiny_llama_dir, _stages(spec), shared=True, between=swap_embedding)
    assert session.captured == 2 and session.reused_captures == 0


def test_other_settings_tokenize_again(tiny_llama_dir, spec, tokenizations):
    stages = _stages(spec)
    stages[1] = stages[1].model_copy(update={"calibration": spec.model_copy(update={"seed": 1})})
    shared, session, runs = _run(tiny_llama_dir, stages, shared=True)
    assert len(tokenizations) == 2 and session.reused_windows == 0
    assert session.captured == 2 and sum(runs) == 2 * SAMPLES
    alone, _, _ = _run(tiny_llama_dir, stages, shared=False)
    _assert_same_model(shared, alone)


def test_two_walks_of_one_stage_share_the_prefix(tiny_llama_dir, spec):
    config = slimformer.MixedPrecision(
        choices=[2, 4], average_bits=3.0, group_size=16, calibration=spec
    )
    shared, session, runs = _run(tiny_llama_dir, [config], shared=True)
    assert sum(runs) == SAMPLES and session.captured == 1 and session.reused_captures == 1
    alone, _, alone_runs = _run(tiny_llama_dir, [config], shared=False)
    assert sum(alone_runs) == 2 * SAMPLES
    _assert_same_model(shared, alone)


def test_the_kept_inputs_stay_untouched_by_a_walk(tiny_llama_dir, spec):
    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    context = StageContext(progress=False)
    apply_method(slim, _stages(spec)[0], context=context)
    kept = [batch.hidden.clone() for batch in context.calibration_session._capture.batches]
    apply_method(slim, _stages(spec)[1], context=context)
    after = context.calibration_session._capture.batches
    assert all(torch.equal(a.hidden, b) for a, b in zip(after, kept, strict=True))


def test_compress_shares_one_session_and_frees_it_after_the_last_calibrated_stage(
    tiny_llama_dir, tiny_txt, tmp_path, tokenizations, monkeypatch
):
    calibration = {"dataset": str(tiny_txt), "samples": SAMPLES, "length": 32}
    recipe = {
        "stages": [
            {"method": "sparsegpt", "parts": ["mlp"], "calibration": calibration},
            {
                "method": "gptq",
                "parts": ["attention"],
                "group_size": 16,
                "calibration": calibration,
            },
            {"method": "rtn", "bits": 8, "group_size": 0, "symmetric": True, "parts": ["mlp"]},
        ]
    }
    sessions: list[CalibrationSession] = []
    real_clear = CalibrationSession.clear

    def clear(self) -> None:
        sessions.append(self)
        real_clear(self)

    monkeypatch.setattr(CalibrationSession, "clear", clear)
    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    runs = _prefix_runs(slim)
    slimformer.compress(
        slim, recipe, tmp_path / "out", measure=MeasureOptions(enabled=False), progress=False
    )
    assert len(tokenizations) == 1 and sum(runs) == SAMPLES
    # one session for the run, cleared after gptq (no later stage calibrates) and after rtn
    assert len(sessions) == 2 and sessions[0] is sessions[1] and sessions[0].captured == 1
    assert sessions[0]._capture is None and not sessions[0]._windows
