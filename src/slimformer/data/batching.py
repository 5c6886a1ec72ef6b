"""Texts (and their labels) to one padded batch of tensors, the way every caller cuts them.

Training, distillation, part scoring and evaluation must see a text cut the
same way, or a model is trained on one input and scored on another: padded to
the longest text of the batch, truncated to ``max_length`` tokens, as the
tokenizer's own tensors (``input_ids``, ``attention_mask`` and whatever else
the model family reads, such as BERT's ``token_type_ids``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from slimformer.data.types import Example


def encode_texts(
    tokenizer, texts: Sequence[str], max_length: int, device: str | torch.device | None = None
) -> dict[str, torch.Tensor]:
    """The tokenizer's tensors for ``texts``: padded, truncated to ``max_length``, on ``device``."""
    encoded = tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    if device is None:
        return dict(encoded)
    return {key: value.to(device) for key, value in encoded.items()}


def encode_labelled(
    tokenizer,
    texts: Sequence[str],
    labels: Sequence[int],
    max_length: int,
    device: str | torch.device | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``(inputs, labels)`` for a classifier: :func:`encode_texts` and a label tensor beside it."""
    return encode_texts(tokenizer, texts, max_length, device), torch.tensor(
        list(labels), device=device
    )


def encode_examples(
    tokenizer,
    examples: Sequence[Example],
    max_length: int,
    device: str | torch.device | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """:func:`encode_labelled` for labelled :class:`Example` s."""
    texts = [example.text for example in examples]
    return encode_labelled(tokenizer, texts, [e.label for e in examples], max_length, device)
