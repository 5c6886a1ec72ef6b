"""bf16 / fp16 float formats: half the bytes, reloads as saved."""

from __future__ import annotations

import pytest
import torch

import slimformer
from conftest import eager_outputs
from slimformer.errors import SlimformerError
from slimformer.evaluate.size import disk_bytes
from slimformer.methods.catalog import make_config


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_float_format_halves_the_saved_bytes_and_reloads_identically(
    tiny_llama_dir, minilm_tokenizer, tmp_path, dtype
):
    dense = slimformer.load(tiny_llama_dir, runtime="eager")
    slimformer.save(dense, tmp_path / "dense")
    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    slimformer.quantize_(slim, slimformer.FloatFormat(dtype=dtype))
    assert {p.dtype for p in slim.model.parameters()} == {getattr(torch, dtype)}
    before = eager_outputs(slim, minilm_tokenizer)
    reference = eager_outputs(dense, minilm_tokenizer)
    assert torch.allclose(before.float(), reference, atol=0.05, rtol=0.05)

    slimformer.save(slim, tmp_path / "half")
    ratio = disk_bytes(tmp_path / "half")[0] / disk_bytes(tmp_path / "dense")[0]
    assert 0.45 < ratio < 0.55
    reloaded = slimformer.load(tmp_path / "half", runtime="eager")
    assert next(reloaded.model.parameters()).dtype == getattr(torch, dtype)
    assert torch.equal(eager_outputs(reloaded, minilm_tokenizer), before)


def test_float_format_rejects_an_unknown_dtype():
    with pytest.raises(SlimformerError, match="dtype"):
        make_config("float", {"dtype": "float8"})
