"""AWQ: searched activation-aware scales, folded where possible, never worse than plain rounding."""

from __future__ import annotations

import pytest
import torch

import slimformer
from slimformer.calibration.engine import BlockContext
from slimformer.errors import SlimformerError
from slimformer.methods.quantization import AWQ, RTN
from slimformer.methods.quantization.awq import awq_scale, output_clip_search
from slimformer.nn import InputScaled, WeightOnlyLinear
from slimformer.nn.grid import QuantScheme, fake_quantize

ARCHS = ["tiny_llama_dir", "tiny_bert_cls_dir"]


@pytest.fixture(scope="module")
def calib(minilm_tokenizer):
    return slimformer.calibration_windows(minilm_tokenizer, "wiki", n=8, length=64)


@pytest.fixture(scope="module")
def held_out(minilm_tokenizer):
    return slimformer.calibration_windows(minilm_tokenizer, "wiki", split="test", n=8, length=64)


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def _with_outliers(slim) -> None:
    """A few channels of every norm ×20: the salient input channels AWQ exists for."""
    with torch.no_grad():
        for layer in slim.adapter.layers():
            for norm in layer.norms.values():
                norm.weight[:4] *= 20.0


def _error(folder, config, calib, ids, outliers=False) -> float:
    """Logits MSE of ``config``'s quantized model against the float model on ``ids``."""
    slim = slimformer.load(folder, runtime="eager")
    if outliers:
        _with_outliers(slim)
    reference = _logits(slim.model, ids)
    slimformer.quantize_(slim, config, calibration=calib, progress=False)
    return (_logits(slim.model, ids) - reference).pow(2).mean().item()


# -- quality ----------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [4, 3])
@pytest.mark.parametrize("fixture", ARCHS)
def test_awq_is_no_worse_than_rtn(fixture, bits, calib, held_out, request):
    """Random tiny models have no salient channels, so AWQ may only tie RTN (within noise)."""
    folder = request.getfixturevalue(fixture)
    rtn = _error(folder, RTN(bits=bits, group_size=32), calib, held_out)
    awq = _error(folder, AWQ(bits=bits, group_size=32), calib, held_out)
    print(f"{fixture} W{bits}: rtn {rtn:.3e} awq {awq:.3e}")
    assert awq <= rtn * 1.05


@pytest.mark.parametrize("fixture", ARCHS)
def test_awq_clearly_beats_rtn_on_outlier_channels(fixture, calib, held_out, request):
    folder = request.getfixturevalue(fixture)
    rtn = _error(folder, RTN(bits=4, group_size=32), calib, held_out, outliers=True)
    awq = _error(folder, AWQ(bits=4, group_size=32), calib, held_out, outliers=True)
    print(f"{fixture} W4 outliers: rtn {rtn:.3e} awq {awq:.3e}")
    assert awq < 0.6 * rtn


def test_alpha_zero_only_without_clipping_is_exactly_rtn(tiny_llama_dir, calib, held_out):
    """With no scale to search and no clip, AWQ must reduce to RTN bit for bit, wrapper-free."""
    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    slimformer.quantize_(slim, RTN(bits=4, group_size=32), progress=False)
    expected = _logits(slim.model, held_out)
    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    config = AWQ(bits=4, group_size=32, grid=1, clip_search=False)
    slimformer.quantize_(slim, config, calibration=calib, progress=False)
    assert torch.equal(_logits(slim.model, held_out), expected)
    assert not any(isinstance(m, InputScaled) for m in slim.model.modules())


# -- what it writes, and reloading ------------------------------------------------------


def _norm_weights(slim) -> list[torch.Tensor]:
    return [n.weight.detach().clone() for la in slim.adapter.layers() for n in la.norms.values()]


@pytest.mark.parametrize("fixture", ARCHS)
def test_saved_awq_model_reloads_bit_identical(fixture, calib, held_out, request, tmp_path):
    slim = slimformer.load(request.getfixturevalue(fixture), runtime="eager")
    _with_outliers(slim)  # so the search surely picks scales to fold
    norms = _norm_weights(slim)
    slimformer.quantize_(slim, AWQ(bits=4, group_size=32), calibration=calib, progress=False)
    wrapped = [m for m in slim.model.modules() if isinstance(m, InputScaled)]
    assert all(isinstance(m.inner, WeightOnlyLinear) for m in wrapped)
    if fixture == "tiny_llama_dir":  # pre-norm: q/k/v and gate/up scales went into the norms
        assert any(not torch.equal(a, b) for a, b in zip(norms, _norm_weights(slim), strict=True))
        assert all(name.endswith("o_proj") for name, m in _named(slim, InputScaled))  # GQA
    else:  # post-norm: the norms are untouched, explicit wrappers carry the scales
        assert all(torch.equal(a, b) for a, b in zip(norms, _norm_weights(slim), strict=True))
        assert wrapped
    expected = _logits(slim.model, held_out)
    slimformer.save(slim, tmp_path / "awq")
    again = slimformer.load(tmp_path / "awq", runtime="eager")
    assert torch.equal(_logits(again.model, held_out), expected)


def _named(slim, kind):
    return [(name, m) for name, m in slim.model.named_modules() if isinstance(m, kind)]


def test_then_gptq_works_and_reloads(tiny_llama_dir, calib, held_out, tmp_path):
    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    reference = _logits(slim.model, held_out)
    config = AWQ(bits=3, group_size=32, then="gptq")
    slimformer.quantize_(slim, config, calibration=calib, progress=False)
    error = (_logits(slim.model, held_out) - reference).pow(2).mean().item()
    rtn = _error(tiny_llama_dir, RTN(bits=3, group_size=32), calib, held_out)
    print(f"llama W3 awq+gptq {error:.3e} rtn {rtn:.3e}")
    assert error < rtn
    assert not any(type(m) is torch.nn.Linear for m in slim.model.model.layers.modules())
    expected = _logits(slim.model, held_out)
    slimformer.save(slim, tmp_path / "awq-gptq")
    again = slimformer.load(tmp_path / "awq-gptq", runtime="eager")
    assert torch.equal(_logits(again.model, held_out), expected)


def test_partly_selected_groups_are_not_scaled(tiny_llama_dir, calib):
    """Excluding q_proj leaves its group (q, k, v) unscaled; k and v are still quantized."""
    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    _with_outliers(slim)
    norms = _norm_weights(slim)
    config = AWQ(bits=4, group_size=32, exclude=["*.q_proj"])
    slimformer.quantize_(slim, config, calibration=calib, progress=False)
    after = _norm_weights(slim)
    assert all(torch.equal(norms[i], after[i]) for i in (0, 2))  # the attention norms
    assert any(not torch.equal(norms[i], after[i]) for i in (1, 3))  # the MLP norms
    quantized = {name for name, _ in _named(slim, WeightOnlyLinear)}
    assert "model.layers.0.self_attn.k_proj" in quantized
    assert not any(name.endswith("q_proj") for name in quantized)


def test_selected_layers_outside_the_stack_are_rounded(tiny_bert_cls_dir, calib):
    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    config = AWQ(bits=4, group_size=32, parts=["attention", "mlp", "head"], grid=2)
    slimformer.quantize_(slim, config, calibration=calib, progress=False)
    assert isinstance(slim.model.classifier, WeightOnlyLinear)
    assert isinstance(slim.model.bert.pooler.dense, WeightOnlyLinear)


def test_search_runs_on_the_first_batches_holding_search_tokens(tiny_llama_dir, calib, monkeypatch):
    seen: list = []
    original = BlockContext.forward

    def spy(self, inputs=None, batches=None):
        seen.append(None if batches is None else list(batches))
        return original(self, inputs, batches)

    monkeypatch.setattr(BlockContext, "forward", spy)
    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    config = AWQ(bits=4, group_size=32, grid=2, search_tokens=3 * 64 - 10)  # windows of 64
    slimformer.quantize_(slim, config, calibration=calib, progress=False)
    searched = [b for b in seen if b is not None and len(b) > 1]
    assert searched and all(b == [0, 1, 2] for b in searched)


def test_impossible_group_size_leaves_the_model_untouched(tiny_llama_dir):
    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    before = {k: v.clone() for k, v in slim.model.state_dict().items()}
    with pytest.raises(SlimformerError, match="group_size 48") as info:
        slimformer.quantize_(slim, AWQ(group_size=48), calibration=torch.ones(2, 8).long())
    assert "\n" not in str(info.value)
    after = slim.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not any(isinstance(m, (WeightOnlyLinear, InputScaled)) for m in slim.model.modules())


# -- the pieces -------------------------------------------------------------------------


def test_awq_scale_is_normalised_and_finite():
    x = torch.tensor([0.0, 0.01, 1.0, 30.0])
    assert torch.equal(awq_scale(x, 0.0), torch.ones(4))
    scale = awq_scale(x, 0.5)
    assert torch.isfinite(scale).all() and (scale > 0).all()
    assert torch.isclose(scale.max() * scale.min(), torch.tensor(1.0))
    assert torch.equal(scale.argsort(), x.argsort())


def test_output_clip_search_never_raises_a_groups_output_error():
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(16, 64, generator=gen)
    weight[:, 5] *= 6.0  # an outlier weight column: clipping pays off somewhere
    x = torch.randn(256, 64, generator=gen) * (torch.rand(64, generator=gen) * 3)
    scheme = QuantScheme(3, 32)
    gram = torch.einsum("ngi,ngj->gij", x.reshape(256, 2, 32), x.reshape(256, 2, 32)) / 256
    ratios = output_clip_search(weight, gram, scheme)

    def group_errors(clip) -> torch.Tensor:
        d = (fake_quantize(weight, scheme, clip) - weight).reshape(16, 2, 32)
        return ((x.reshape(256, 1, 2, 32) * d).sum(-1) ** 2).mean(0)

    clipped, plain = group_errors(ratios), group_errors(1.0)
    assert ratios.shape == (16, 2) and (ratios < 1).any()
    assert (clipped <= plain * (1 + 1e-5)).all() and clipped.sum() < plain.sum()


def test_forward_on_a_subset_of_batches(tiny_llama_dir):
    """``ctx.forward(batches=...)`` runs only the picked batches, in the order asked."""
    from slimformer.calibration.engine import run_sequential

    ids = torch.randint(1000, 2000, (4, 10), generator=torch.Generator().manual_seed(0))

    def process(ctx: BlockContext) -> None:
        everything = ctx.forward()
        picked = ctx.forward(batches=[2, 0])
        assert [p.shape for p in picked] == [everything[2].shape, everything[0].shape]
        assert torch.equal(picked[0], everything[2]) and torch.equal(picked[1], everything[0])
        doubled = ctx.forward([2 * ctx.inputs[1]], batches=[1])
        assert not torch.allclose(doubled[0], everything[1])
        with pytest.raises(SlimformerError, match="one tensor per batch"):
            ctx.forward(ctx.inputs, batches=[0])

    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    run_sequential(slim, ids, process, progress=False)


def test_bf16_calibration_passes_keep_the_searches_in_float32(tiny_llama_dir, calib):
    """Hooks fire inside the block's bf16 autocast; the clip search's grams must stay float32."""
    from slimformer.calibration.spec import CalibrationSpec

    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    config = AWQ(bits=4, group_size=32, calibration=CalibrationSpec(compute_dtype="bfloat16"))
    slimformer.quantize_(slim, config, calibration=calib, progress=False)
    assert all(
        torch.isfinite(m.dequantized_weight()).all()
        for m in slim.model.modules()
        if isinstance(m, WeightOnlyLinear)
    )
