"""The token cache is under SLIMFORMER_CACHE, a user path: a crafted pickle there runs nothing."""

from __future__ import annotations

import os

import torch

from slimformer.data.tokens import _cache_key, tokenize_text
from slimformer.paths import cache_dir


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_crafted_pickle_in_the_token_cache_is_recomputed_not_run(minilm_tokenizer, tmp_path):
    text = "a sentence whose cached tokens were replaced by a crafted pickle"
    marker = tmp_path / "pwned"
    path = cache_dir() / "tokens" / f"{_cache_key(minilm_tokenizer, text)}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"ids": _Payload(str(marker))}, path)
    ids = tokenize_text(minilm_tokenizer, text)
    expected = minilm_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids.tolist() == expected
    assert not marker.exists()
