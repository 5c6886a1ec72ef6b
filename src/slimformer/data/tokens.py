"""Turning a long text into one token stream.

Perplexity and calibration both tokenize a whole split at once, far past the
model's maximum length; that is intended (the stream is cut into windows
afterwards), so the tokenizer's "sequence is longer than the maximum"
warning is silenced and no truncation or special tokens are applied.
"""

from __future__ import annotations

import torch

from slimformer.errors import SlimformerError


def tokenize_text(tokenizer, text: str) -> torch.Tensor:
    """The token ids of ``text`` as a 1-D LongTensor, without special tokens."""
    if not callable(tokenizer):
        raise SlimformerError(
            f"expected a Hugging Face tokenizer, got {type(tokenizer).__name__}",
            "load one with transformers.AutoTokenizer.from_pretrained(model_dir)",
        )
    encoded = tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)
    return torch.tensor(encoded["input_ids"], dtype=torch.long)
