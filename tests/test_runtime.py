"""The run times: shape buckets, output cutting, runtime choice, and the compiled path."""

from __future__ import annotations

import pytest
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

import slimformer
from slimformer import runtime
from slimformer.errors import SlimformerError


@pytest.mark.parametrize(
    ("batch", "bucket"), [(1, 1), (2, 2), (3, 4), (17, 32), (32, 32), (33, 64), (70, 96)]
)
def test_batch_buckets(batch, bucket):
    assert runtime._bucket_batch(batch) == bucket


def test_pad_inputs_masks_the_padding():
    ids = torch.tensor([[5, 6, 7], [8, 9, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    padded = runtime._pad_inputs({"input_ids": ids, "attention_mask": mask}, 4, 32)
    assert padded["input_ids"].shape == (4, 32)
    assert torch.equal(padded["input_ids"][:2, :3], ids)
    assert padded["attention_mask"].sum() == mask.sum()


def test_pad_inputs_creates_a_mask_when_none_is_given():
    padded = runtime._pad_inputs({"input_ids": torch.ones(1, 5, dtype=torch.long)}, 1, 32)
    assert padded["attention_mask"].sum() == 5


def test_cut_removes_rows_and_positions():
    out = BaseModelOutputWithPooling(
        last_hidden_state=torch.zeros(4, 32, 8), pooler_output=torch.zeros(4, 8)
    )
    cut = runtime._cut(out, 3, 10, 4, 32)
    assert cut.last_hidden_state.shape == (3, 10, 8)
    assert cut.pooler_output.shape == (3, 8)


def test_unpaddable_calls_are_recognised():
    ids = torch.ones(1, 4, dtype=torch.long)
    assert runtime._paddable({"input_ids": ids, "attention_mask": ids})
    assert not runtime._paddable({"input_ids": ids, "labels": ids})
    assert not runtime._paddable({"inputs_embeds": torch.zeros(1, 4, 8)})


def test_choose_runtime():
    assert runtime.choose_runtime("auto", prefers_compile=False) == "eager"
    assert runtime.choose_runtime("eager", prefers_compile=True) == "eager"
    with pytest.raises(SlimformerError, match="unknown runtime 'fast'"):
        runtime.choose_runtime("fast", prefers_compile=True)


def test_no_compiler_falls_back_to_eager_with_a_warning(monkeypatch):
    monkeypatch.setattr(runtime.shutil, "which", lambda name: None)
    with pytest.warns(UserWarning, match="install g\\+\\+"):
        assert runtime.choose_runtime("auto", prefers_compile=True) == "eager"


def test_int8_models_prefer_the_compiled_runtime(tiny_bert_cls_dir):
    slim = slimformer.load(tiny_bert_cls_dir)
    assert slim.runtime == "eager"
    slimformer.quantize_(slim, slimformer.Int8Dynamic(), progress=False)
    assert slim.prefers_compile()
    if runtime.compiler_available():
        assert slim.set_runtime("auto") == "compile"


@pytest.mark.skipif(not runtime.compiler_available(), reason="needs a C++ compiler")
def test_compiled_runner_matches_eager_at_padded_shapes(tiny_bert_cls_dir):
    """The real compiled path: odd batch and length are padded, compiled, and cut back."""
    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    slimformer.quantize_(slim, slimformer.Int8Dynamic(), progress=False)
    slim.set_runtime("compile")
    torch.manual_seed(0)
    ids = torch.randint(1000, 2000, (3, 10))
    mask = torch.ones_like(ids)
    mask[2, 6:] = 0
    with torch.inference_mode():
        compiled = slim(input_ids=ids, attention_mask=mask).logits
        eager = slim.model(input_ids=ids, attention_mask=mask).logits
    assert compiled.shape == eager.shape == (3, 3)
    assert torch.allclose(compiled, eager, atol=0.05, rtol=0.05)
    assert torch.equal(compiled.argmax(-1), eager.argmax(-1))
