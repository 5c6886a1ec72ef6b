"""The order a training run visits its items in, epoch by epoch: a pure function of the seed.

Because the order is recomputed rather than stored, the position in the data
stream is one integer and a resumed run continues exactly where it stopped.
Two rules exist. ``epoch_seeded`` (the trainer's default) draws epoch ``e``'s
permutation from a generator seeded with ``(seed, e)``. ``single_stream``
seeds one generator with ``seed`` and draws each epoch's permutation in turn:
the order of the original fine-tune loop, kept so that the cached fine-tunes
(zoo models keyed by their settings) come out bit-identical.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from slimformer.training.settings import Shuffle


@lru_cache(maxsize=8)
def epoch_order(shuffle: Shuffle, seed: int, epoch: int, n_items: int) -> tuple[int, ...]:
    """The item indices of ``epoch`` (0-based) in visiting order."""
    if shuffle == "epoch_seeded":
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        return tuple(torch.randperm(n_items, generator=generator).tolist())
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epoch):  # the earlier epochs' draws, to reach this epoch's
        torch.randperm(n_items, generator=generator)
    return tuple(torch.randperm(n_items, generator=generator).tolist())
