"""Bad inputs end in one line, ``error: <problem>; <fix>``, and exit 2: never a traceback.

Each case here ended in a traceback before (issue 19, item 6), most of them
after the model had been loaded or stages had run.
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from slimformer.cli import main


def _one_line_error(capsys, argv, *expected: str) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err and err[-1].startswith("error: ")
    assert "Traceback" not in "\n".join(err)
    for word in expected:
        assert word in err[-1]
    return err[-1]


def _measure(model) -> list:
    return ["measure", model, "--runs", "1", "--warmup", "0", "--shapes", "1x8"]


@pytest.fixture()
def bert_copy(tiny_bert_dir, tmp_path):
    return shutil.copytree(tiny_bert_dir, tmp_path / "model")


def test_a_truncated_safetensors_file(bert_copy, capsys):
    weights = bert_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _one_line_error(capsys, _measure(bert_copy), "model.safetensors", "truncated")


def test_a_garbage_safetensors_file(bert_copy, capsys):
    (bert_copy / "model.safetensors").write_bytes(b"not safetensors at all " * 8)
    _one_line_error(capsys, _measure(bert_copy), "not a readable safetensors file")


def test_a_folder_with_a_config_and_no_weights(bert_copy, capsys):
    (bert_copy / "model.safetensors").unlink()
    _one_line_error(capsys, _measure(bert_copy), "no weights")


def test_a_crafted_pickle_as_pytorch_model_bin_is_refused_and_runs_nothing(
    bert_copy, tmp_path, capsys
):
    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(tmp_path / "pwned"),))

    (bert_copy / "model.safetensors").unlink()
    torch.save({"embeddings.word_embeddings.weight": Payload()}, bert_copy / "pytorch_model.bin")
    _one_line_error(capsys, _measure(bert_copy), "could run code")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("content", [b"GGUF", b"", b"PK\x03\x04" + b"\x00" * 40])
def test_a_tiny_or_foreign_gguf_file(tmp_path, capsys, content):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(content)
    _one_line_error(capsys, _measure(gguf), "not a GGUF file")


def test_a_gguf_file_cut_after_its_header(tmp_path, capsys):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + bytes(16))
    _one_line_error(capsys, _measure(gguf), "cannot read", "GGUF")


def test_slimformer_cache_pointing_at_a_file(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache-file"
    cache.write_text("x")
    monkeypatch.setenv("SLIMFORMER_CACHE", str(cache))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + bytes(40))  # a GGUF is converted into the cache
    _one_line_error(capsys, _measure(gguf), "SLIMFORMER_CACHE", str(cache))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_fails_before_loading(
    tiny_bert_dir, write_recipe, tmp_path, capsys
):
    recipe = write_recipe("stages:\n  - method: int8_dynamic\n")
    out = tmp_path / "out"
    argv = ["compress", tiny_bert_dir, "--recipe", recipe, "--out", out, "--device", "cuda"]
    _one_line_error(capsys, [*argv, "--no-measure"], "cuda", "--device cpu")
    assert not out.exists()


def test_an_unknown_device(tiny_bert_dir, write_recipe, tmp_path, capsys):
    recipe = write_recipe("stages:\n  - method: int8_dynamic\n")
    argv = ["compress", tiny_bert_dir, "--recipe", recipe, "--out", tmp_path / "o"]
    _one_line_error(capsys, [*argv, "--device", "gpu7"], "unknown device")


def test_shapes_longer_than_the_model_positions_in_measure(tiny_bert_dir, capsys):
    argv = ["measure", tiny_bert_dir, "--runs", "1", "--warmup", "0", "--shapes", "1x8,1x1024"]
    _one_line_error(capsys, argv, "1024", "128 positions")


def test_shapes_longer_than_the_model_positions_in_compress_fail_before_stages(
    tiny_bert_dir, write_recipe, tmp_path, capsys
):
    recipe = write_recipe("stages:\n  - method: int8_dynamic\n")
    out = tmp_path / "out"
    argv = ["compress", tiny_bert_dir, "--recipe", recipe, "--out", out, "--shapes", "1x1024"]
    _one_line_error(capsys, argv, "128 positions")
    assert not out.exists()
