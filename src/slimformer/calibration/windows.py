"""Calibration windows: the token batches that data-aware compression methods read.

A split's texts are joined with blank lines and tokenized once; ``n`` window
starts are then drawn from a seeded ``torch.Generator``, so the same seed
always gives the same windows. Windows are always full length; when the text
is short they may overlap.
"""

from __future__ import annotations

import os

import torch

from slimformer.data.registry import resolve_dataset
from slimformer.data.tokens import tokenize_text
from slimformer.data.types import Dataset
from slimformer.errors import SlimformerError


def calibration_windows(
    tokenizer,
    dataset: Dataset | str | os.PathLike = "wiki",
    split: str = "train",
    n: int = 64,
    length: int = 512,
    seed: int = 0,
) -> torch.Tensor:
    """A LongTensor ``[n, length]`` of token windows from one split of a dataset."""
    _check_positive(n=n, length=length)
    text = resolve_dataset(dataset).joined(split)
    stream = tokenize_text(tokenizer, text)
    if stream.numel() < length:
        raise SlimformerError(
            f"calibration text has {stream.numel()} tokens, fewer than one window of {length}",
            "use a smaller calibration length or a dataset split with more text",
        )
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, stream.numel() - length + 1, (n,), generator=generator)
    offsets = torch.arange(length)
    return stream[starts[:, None] + offsets[None, :]]


def _check_positive(**values: int) -> None:
    """Zero or negative sizes are user errors, reported by their option name."""
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise SlimformerError(
                f"calibration {name} is {value!r}", f"set {name} to an integer >= 1"
            )
