"""Perplexity of a causal language model on a dataset split.

The split's documents are joined with blank lines, tokenized once, cut to the
first ``max_tokens`` tokens and split into non-overlapping windows of
``window`` tokens (a final partial window is dropped, so every window sees the
same context length and results compare across models). The loss is summed
over every predicted token and divided by their count, so the mean is per
token, not per window; perplexity is its exponential.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from slimformer.data.registry import resolve_dataset
from slimformer.data.tokens import tokenize_text
from slimformer.data.types import Dataset
from slimformer.errors import SlimformerError


@contextmanager
def inference(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) and no autograd, restoring the caller's mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def model_logits(output) -> torch.Tensor:
    """Logits from a Hugging Face output object or a plain tuple."""
    logits = getattr(output, "logits", None)
    return output[0] if logits is None else logits


def evaluate_perplexity(
    model: nn.Module,
    tokenizer,
    dataset: Dataset | str | os.PathLike = "wiki",
    split: str = "test",
    max_tokens: int | None = 16384,
    window: int = 512,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict:
    """Perplexity over non-overlapping windows; the model must already be on ``device``.

    Returns perplexity, mean_loss (nats per predicted token), tokens (predicted
    tokens: ``windows * (window - 1)``), windows, window, dataset and split.
    """
    _check_sizes(window=window, batch_size=batch_size, max_tokens=max_tokens)
    data = resolve_dataset(dataset)
    windows = token_windows(tokenizer, data.joined(split), window, max_tokens)
    total_loss, count = 0.0, 0
    with (
        inference(model),
        tqdm(total=len(windows), desc="perplexity", unit="window", disable=not progress) as bar,
    ):
        for batch in windows.split(batch_size):
            batch = batch.to(device)
            total_loss += summed_token_loss(model_logits(model(input_ids=batch)), batch)
            count += batch.shape[0] * (window - 1)
            bar.update(batch.shape[0])
    mean_loss = total_loss / count
    return {
        "perplexity": math.exp(mean_loss),
        "mean_loss": mean_loss,
        "tokens": count,
        "windows": len(windows),
        "window": window,
        "dataset": data.name,
        "split": split,
    }


def token_windows(tokenizer, text: str, window: int, max_tokens: int | None) -> torch.Tensor:
    """``[windows, window]`` ids from the first ``max_tokens`` tokens of ``text``."""
    ids = tokenize_text(tokenizer, text)
    if max_tokens is not None:
        ids = ids[:max_tokens]
    n_windows = ids.numel() // window
    if n_windows == 0:
        raise SlimformerError(
            f"perplexity needs at least one window of {window} tokens, but the text has "
            f"{ids.numel()} (max_tokens={max_tokens})",
            "use a smaller window, a larger max_tokens or a split with more text",
        )
    return ids[: n_windows * window].view(n_windows, window)


def summed_token_loss(logits: torch.Tensor, input_ids: torch.Tensor) -> float:
    """Cross-entropy summed over every next-token prediction in the batch (in float32)."""
    vocab = logits.shape[-1]
    if int(input_ids.max()) >= vocab:
        raise SlimformerError(
            f"the tokenizer produced token id {int(input_ids.max())} but the model has only "
            f"{vocab} logits",
            "evaluate the model with its own tokenizer",
        )
    predicted = logits[:, :-1].reshape(-1, vocab).float()
    targets = input_ids[:, 1:].reshape(-1).to(predicted.device)
    return F.cross_entropy(predicted, targets, reduction="sum").item()


def _check_sizes(window: int, batch_size: int, max_tokens: int | None) -> None:
    """Reject sizes that cannot give a single prediction, naming the option."""
    checks = {"window": (window, 2), "batch_size": (batch_size, 1)}
    if max_tokens is not None:
        checks["max_tokens"] = (max_tokens, 2)
    for name, (value, minimum) in checks.items():
        if not isinstance(value, int) or value < minimum:
            raise SlimformerError(
                f"perplexity {name} is {value!r}", f"set {name} to an integer >= {minimum}"
            )
