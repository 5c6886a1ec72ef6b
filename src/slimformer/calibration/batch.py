"""One calibration batch as a block sees it: its input hidden states and the other arguments.

The engine records these once, at the first block, and replays them to every
block; the branch-wise path runs parts of a block on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class BlockBatch:
    """One batch of a block's input and the other arguments the model passed with it.

    ``key`` is None when the hidden states came positionally first, else the
    keyword they came under. ``mask`` is the ``[batch, length]`` bool mask of
    real tokens, None when every token is real.
    """

    hidden: Tensor
    args: tuple
    kwargs: dict[str, Any]
    key: str | None
    mask: Tensor | None
    #: Matrix products of the block passes in this dtype (bf16 halves their cost on CPUs
    #: with bf16 instructions); None keeps the model's own precision.
    compute_dtype: torch.dtype | None = None

    def autocast(self) -> torch.autocast:
        """The precision context every pass over this batch runs in."""
        return torch.autocast(
            self.hidden.device.type,
            dtype=self.compute_dtype,
            enabled=self.compute_dtype is not None,
        )

    def run(self, block: nn.Module, hidden: Tensor | None = None) -> Tensor:
        """The block's output hidden states on this batch (or on ``hidden`` instead)."""
        states = self.hidden if hidden is None else hidden
        with self.autocast():
            if self.key is None:
                out = block(states, *self.args, **self.kwargs)
            else:
                out = block(*self.args, **{**self.kwargs, self.key: states})
        # Older HF layers return a tuple (hidden, attn, ...); transformers 5 returns a tensor.
        out = out if isinstance(out, Tensor) else out[0]
        return out.to(states.dtype)
