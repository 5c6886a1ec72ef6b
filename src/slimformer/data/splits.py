"""The fixed rules that assign examples to splits.

Every loader uses one of these, so a dataset's splits never depend on the
machine, the Python version or the order files were listed in: the same
file always gives the same train and test examples.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

SPLIT_SEED = 0


def modulo_splits(items: Sequence[T]) -> dict[str, list[T]]:
    """Item i goes to ``test`` if i % 5 == 0, ``validation`` if i % 5 == 1, else ``train``.

    Interleaving rather than cutting keeps each split spread over the whole
    source, so a file sorted by topic still gives representative splits.
    """
    splits: dict[str, list[T]] = {"train": [], "validation": [], "test": []}
    for i, item in enumerate(items):
        name = "test" if i % 5 == 0 else "validation" if i % 5 == 1 else "train"
        splits[name].append(item)
    return splits


def shuffled_splits(items: Sequence[T], n_train: int) -> dict[str, list[T]]:
    """Shuffle with ``random.Random(0)``; the first ``n_train`` are train, the rest test.

    Labelled sources are often sorted by label, so they are shuffled before
    cutting; the fixed seed keeps the cut identical everywhere.
    """
    shuffled = list(items)
    random.Random(SPLIT_SEED).shuffle(shuffled)
    return {"train": shuffled[:n_train], "test": shuffled[n_train:]}


def train_fraction_splits(items: Sequence[T], fraction: float = 0.8) -> dict[str, list[T]]:
    """Shuffle with ``random.Random(0)``; the first ``int(fraction * n)`` are train."""
    return shuffled_splits(items, int(fraction * len(items)))
