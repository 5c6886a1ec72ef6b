"""Turning a long text into one token stream, cached on disk.

Perplexity and calibration both tokenize a whole split at once, far past the
model's maximum length; that is intended (the stream is cut into windows
afterwards), so the tokenizer's "sequence is longer than the maximum"
warning is silenced and no truncation or special tokens are applied.

Tokenizing a split costs seconds and a few hundred MB of transient memory
every time a method calibrates or a model is evaluated, for the same answer:
streams of fast tokenizers are kept in the cache, keyed by the text and the
tokenizer's full definition, so a changed text or vocabulary is a new entry.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile

import torch

from slimformer.errors import SlimformerError
from slimformer.paths import cache_dir

#: Bumped if the stored form changes.
_CACHE_VERSION = 1


def tokenize_text(tokenizer, text: str) -> torch.Tensor:
    """The token ids of ``text`` as a 1-D LongTensor, without special tokens."""
    if not callable(tokenizer):
        raise SlimformerError(
            f"expected a Hugging Face tokenizer, got {type(tokenizer).__name__}",
            "load one with transformers.AutoTokenizer.from_pretrained(model_dir)",
        )
    key = _cache_key(tokenizer, text)
    path = None if key is None else cache_dir() / "tokens" / f"{key}.pt"
    if path is not None and path.is_file():
        try:
            return torch.load(path, weights_only=True).long()
        except (
            OSError,
            RuntimeError,
            EOFError,
            pickle.UnpicklingError,
        ):  # a damaged entry is recomputed, not trusted
            path.unlink(missing_ok=True)
    encoded = tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)
    ids = torch.tensor(encoded["input_ids"], dtype=torch.long)
    if path is not None:
        _store(ids, path)
    return ids


def _cache_key(tokenizer, text: str) -> str | None:
    """A digest of the text and the tokenizer's definition; None if it has no such definition."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    to_str = getattr(backend, "to_str", None)
    if not callable(to_str):
        return None  # slow tokenizers: no complete, cheap fingerprint, so no cache
    digest = hashlib.sha256(f"v{_CACHE_VERSION}".encode())
    digest.update(to_str().encode())
    digest.update(text.encode())
    return digest.hexdigest()[:32]


def _store(ids: torch.Tensor, path) -> None:
    """Write atomically: concurrent runs never read a half-written stream."""
    small = ids.to(torch.int32) if ids.numel() and int(ids.max()) < 2**31 else ids
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(handle)
        torch.save(small, tmp)
        os.replace(tmp, path)
    except OSError:  # a read-only cache costs speed, never correctness
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
