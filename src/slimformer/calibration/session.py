"""One calibration session for a whole recipe run, and the one helper calibrated methods call.

Every calibrated stage needs the same two things before it can work on a
block: token windows cut from its calibration text, and what the model's
prefix (embeddings, rotary tables, mask building) hands to the first block.
Neither depends on what earlier stages did *inside* the layer stack, so when
two stages of one recipe calibrate on the same text, the second need not
tokenize again nor re-run the prefix. A :class:`CalibrationSession` lives as
long as the recipe run and keeps both:

- windows, per tokenizer and calibration settings (or per windows/dataset
  given to the verb);
- the first block's captured inputs, per windows, device and batch size,
  handed out again only while nothing outside the layer stack has changed
  (checked with a digest of the values of every parameter and buffer
  outside the stack, the outside modules and the model config; any doubt
  recaptures).

Methods reach it through :func:`slimformer.calibration.run.calibrate`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain
from typing import Any

import torch
from torch import Tensor, nn

from slimformer.calibration.batch import BlockBatch
from slimformer.calibration.spec import CalibrationSpec, calibration_tokens
from slimformer.model import SlimModel

__all__ = ["CalibrationSession", "outside_fingerprint"]


@dataclass
class _Capture:
    """The first block's inputs for one set of windows, kept untouched between walks."""

    key: tuple
    windows: Tensor  # held so the key's id() stays this tensor's
    fingerprint: tuple
    batches: list[BlockBatch]


@dataclass
class CalibrationSession:
    """Windows and the first block's inputs, shared by the calibrated stages of one run.

    ``tokenized`` and ``captured`` count the work actually done (tests and
    curious users read them); ``reused_windows`` and ``reused_captures`` count
    what was served from the session instead.
    """

    tokenized: int = 0
    captured: int = 0
    reused_windows: int = 0
    reused_captures: int = 0
    _windows: dict[Hashable, tuple[Tensor, tuple]] = field(default_factory=dict, repr=False)
    _capture: _Capture | None = field(default=None, repr=False)

    # -- windows ------------------------------------------------------------------------

    def windows(self, slim: SlimModel, spec: CalibrationSpec, given: Any = None) -> Tensor:
        """``calibration_tokens(slim, spec, given)``, tokenized once per tokenizer and setting."""
        if isinstance(given, Tensor):
            return calibration_tokens(slim, spec, given)  # nothing to tokenize
        key, held = _windows_key(slim.tokenizer, spec, given)
        cached = self._windows.get(key)
        if cached is not None:
            self.reused_windows += 1
            return cached[0]
        windows = calibration_tokens(slim, spec, given)
        self.tokenized += 1
        self._windows[key] = (windows, held)  # held: the objects whose id() is in the key
        return windows

    # -- the first block's inputs ---------------------------------------------------------

    def first_inputs(
        self,
        model: nn.Module,
        stack: nn.ModuleList,
        windows: Tensor,
        device: torch.device,
        batch_size: int,
        capture: Callable[[], list[BlockBatch]],
    ) -> list[BlockBatch]:
        """The first block's inputs: a fresh copy of the kept ones, or ``capture()``'s (kept)."""
        key = (id(windows), windows._version, str(device), batch_size)
        kept = self._capture
        if (
            kept is not None
            and kept.key == key
            and kept.fingerprint == outside_fingerprint(model, stack)
        ):
            self.reused_captures += 1
            return _copied(kept.batches)
        self._capture = None  # let the old copy go before the new capture's memory is taken
        batches = capture()
        self.captured += 1
        self._capture = _Capture(key, windows, outside_fingerprint(model, stack), _copied(batches))
        return batches

    def check_outside(self, model: nn.Module, stack: nn.ModuleList) -> None:
        """Forget the kept inputs if a walk changed anything outside the stack."""
        kept = self._capture
        if kept is not None and kept.fingerprint != outside_fingerprint(model, stack):
            self._capture = None

    def clear(self) -> None:
        """Drop everything kept (memory back; the next stage tokenizes and captures again)."""
        self._windows.clear()
        self._capture = None


def outside_fingerprint(model: nn.Module, stack: nn.ModuleList) -> tuple:
    """Everything the prefix's output may depend on, outside the layer stack, as a value.

    Each parameter and buffer by name, identity, layout and a digest of its
    values (version counters alone miss writes through ``.data``), each
    module outside the stack by identity (a replaced embedding or norm), the
    stack by identity and length, and the model's config. Any change reads
    as a change: the cost of a false alarm is one recapture.
    """
    inside = {id(t) for t in chain(stack.parameters(), stack.buffers())}
    inside_modules = {id(m) for m in stack.modules()}
    digests: dict[int, object] = {}  # a tied tensor is read once
    tensors = tuple(
        (name, id(t), tuple(t.shape), t.dtype, str(t.device), _digest(t, digests))
        for name, t in chain(
            model.named_parameters(remove_duplicate=False),
            model.named_buffers(remove_duplicate=False),
        )
        if id(t) not in inside
    )
    modules = tuple(
        (name, id(m)) for name, m in model.named_modules() if id(m) not in inside_modules
    )
    return (id(stack), len(stack), tensors, modules, _config_text(model))


def _digest(tensor: Tensor, seen: dict[int, object]) -> object:
    """A digest of the tensor's bytes; a tensor that cannot be read never matches itself."""
    if id(tensor) not in seen:
        seen[id(tensor)] = _bytes_digest(tensor)
    return seen[id(tensor)]


def _bytes_digest(tensor: Tensor) -> object:
    try:
        flat = tensor.detach().reshape(-1).contiguous()
        raw = flat.view(torch.uint8).cpu().numpy()
    except (RuntimeError, TypeError, NotImplementedError):  # meta, quantized, ...: recapture
        return object()
    return hashlib.blake2b(raw.data, digest_size=16).digest()


def _config_text(model: nn.Module) -> str | None:
    config = getattr(model, "config", None)
    to_json = getattr(config, "to_json_string", None)
    if not callable(to_json):
        return None
    try:
        return to_json(use_diff=False)
    except (TypeError, ValueError):  # an attribute JSON cannot hold: compare its repr instead
        return repr(config)


def _windows_key(tokenizer: Any, spec: CalibrationSpec, given: Any) -> tuple[Hashable, tuple]:
    """A key for the windows ``calibration_tokens`` would cut, and the objects it names by id."""
    dataset = given if given is not None else spec.dataset
    if isinstance(dataset, (str, os.PathLike)):
        source: Hashable = ("path", os.fspath(dataset))
    else:
        source = ("object", id(dataset))
    key = (id(tokenizer), source, spec.split, spec.samples, spec.length, spec.seed)
    return key, (tokenizer, dataset)


def _copied(batches: Sequence[BlockBatch]) -> list[BlockBatch]:
    """New batches with their own hidden states: walks reassign and may write them in place.

    The other arguments (masks, rotary tables) are only read by blocks, so
    they stay shared.
    """
    return [replace(batch, hidden=batch.hidden.clone()) for batch in batches]
