"""Training checkpoints: everything a resumed run needs to continue bit-for-bit.

A checkpoint holds the trained module, the optimizer and scheduler, every
random generator (torch, CUDA, Python, NumPy) and the position in the data
stream, plus the settings it was made with: resuming under other settings
would silently train a different model, so it is refused. Files are written
to a temporary name and renamed into place, so a run killed mid-write leaves
the previous checkpoint (and the best model) intact.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from slimformer.errors import SlimformerError
from slimformer.paths import atomic_file

LAST = "last.pt"
BEST = "best.pt"


def rng_states() -> dict[str, Any]:
    """The state of every generator training draws from (dropout, shuffles)."""
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy

        states["numpy"] = numpy.random.get_state()
    except ImportError:  # numpy is optional
        pass
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if "numpy" in states:
        import numpy

        numpy.random.set_state(states["numpy"])


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: readers see old or new, never half."""
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a file from another program, or a truncated copy
        raise SlimformerError(
            f"cannot read the checkpoint {path} ({type(exc).__name__})",
            "delete it to start afresh, or point checkpoint_dir elsewhere",
        ) from None


def check_same_settings(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Refuse a resume under different settings, naming the first one that differs."""
    if saved == current:
        return
    keys = sorted(set(saved) | set(current))
    key = next(k for k in keys if saved.get(k) != current.get(k))
    raise SlimformerError(
        f"the checkpoint in {path.parent} was made with {key}={saved.get(key)!r}, "
        f"this run has {key}={current.get(key)!r}",
        "resume with the same settings, or use another checkpoint_dir (or delete it) "
        "to start afresh",
    )
