"""The supervised training loop for sequence classifiers, shared by every caller.

Seeded and deterministic on CPU: the same data, settings and seed give the
same weights, which is what makes the fine-tune cache by content hash sound.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from slimformer.data.types import Example
from slimformer.errors import SlimformerError


def train_classifier(
    model: nn.Module,
    tokenizer,
    examples: Sequence[Example],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    max_length: int,
    seed: int,
    weight_decay: float = 0.01,
    device: str = "cpu",
    progress: bool = True,
) -> list[float]:
    """Train ``model`` (a ``*ForSequenceClassification``) in place; returns epoch losses."""
    if not examples:
        raise SlimformerError("the training split is empty", "pass a dataset with examples")
    trainable = [p for p in model.parameters() if p.requires_grad and p.is_floating_point()]
    if not trainable:
        raise SlimformerError(
            "the model has no trainable float weights (all layers are compressed)",
            "put the finetune stage before the quantization stage",
        )
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    model.to(device).train()
    losses = []
    steps = epochs * ((len(examples) + batch_size - 1) // batch_size)
    bar = tqdm(total=steps, desc="finetune", unit="step", disable=not progress)
    for _ in range(epochs):
        order = torch.randperm(len(examples), generator=generator).tolist()
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = [examples[i] for i in order[start : start + batch_size]]
            loss = _step(model, tokenizer, batch, max_length, device, optimizer)
            total += loss * len(batch)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
        losses.append(total / len(examples))
    bar.close()
    model.eval()
    return losses


def _step(model, tokenizer, batch, max_length, device, optimizer) -> float:
    encoded = tokenizer(
        [ex.text for ex in batch],
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    ).to(device)
    labels = torch.tensor([ex.label for ex in batch], device=device)
    loss = model(**encoded, labels=labels).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())
