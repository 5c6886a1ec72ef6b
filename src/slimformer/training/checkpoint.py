"""Training checkpoints: everything a resumed run needs to continue bit-for-bit.

A checkpoint holds the trained module, the optimizer and scheduler, every
random generator (torch, CUDA, Python, NumPy) and the position in the data
stream, plus the settings it was made with: resuming under other settings
would silently train a different model, so it is refused. Files are written
to a temporary name and renamed into place, so a run killed mid-write leaves
the previous checkpoint (and the best model) intact.

Checkpoints live in a folder the user names, so they are read with
``torch.load(weights_only=True)``: tensors, numbers, strings and plain
containers only, never an arbitrary pickled object that could run code.
The one non-tensor object training state held, NumPy's generator state, is
stored as plain lists for that reason. A checkpoint written before that (or
by another program) is refused with one line, never unpickled.
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

        name, keys, pos, has_gauss, cached = numpy.random.get_state()
        states["numpy"] = [name, keys.tolist(), pos, has_gauss, cached]
    except ImportError:  # numpy is optional
        pass
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if "numpy" in states:
        import numpy

        name, keys, pos, has_gauss, cached = states["numpy"]
        keys = numpy.asarray(keys, dtype=numpy.uint32)
        numpy.random.set_state((name, keys, pos, has_gauss, cached))


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: readers see old or new, never half."""
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint without running code from it (``weights_only=True``).

    Anything else (a truncated copy, a file from another program, a pickle
    holding objects, a checkpoint from an older slimformer) is one line
    telling the user to start afresh.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to read gets the same advice
        reason = type(exc).__name__
        raise SlimformerError(
            f"cannot read the checkpoint {path} safely (a truncated file, a file from "
            f"another program or an older slimformer, or objects beyond tensors: {reason})",
            "delete it (or point checkpoint_dir elsewhere) to start the training again",
        ) from None
    if not isinstance(payload, dict):
        raise SlimformerError(
            f"{path} is not a slimformer checkpoint",
            "delete it (or point checkpoint_dir elsewhere) to start the training again",
        )
    return payload


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
