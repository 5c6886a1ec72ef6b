"""Teacher outputs cached on disk: a frozen teacher answers each training item once.

The teacher never trains during distillation, so its outputs for an item
are a pure function of its weights, the item and how the item is batched
into tokens. Computing them once (one no-grad pass over the data) saves the
teacher's forward pass in every later epoch, and in every later run on the
same teacher and data (a sweep over students, losses or learning rates).

The cache key hashes the teacher's weights and config, every item (text,
label or token ids), ``max_length``, what the losses read and the stored
dtype, so a changed teacher or changed data is a new entry, never a stale
hit. Each item stores only its real tokens' outputs, and only the outputs
the losses read (the mapped hidden states, the q/k/v of attention losses,
logits): every hidden state of a 6-layer teacher in float32 was 347 MB for
a 3-layer student that reads 4 of the 7. A batch puts the rows back at the
positions its attention mask marks real, so any padding side or batch
composition works; padded positions read zero (every loss masks them out).

Values are stored in float16 by default (half the bytes, and the losses
computed from them match the live teacher's to about 1e-4 relative, see
tests/test_distill_teacher_cache.py); a tensor beyond float16's range is
kept in float32, and ``dtype=torch.float32`` stores everything exactly.
Reads come back as float32.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save_file

from slimformer.errors import SlimformerError
from slimformer.methods.distillation.data import Batch, Collator, Item
from slimformer.methods.distillation.outputs import Needs, Outputs, Shape
from slimformer.paths import atomic_file, cache_dir

#: Bumped if the stored form changes. 2: only the needed hidden states, float16.
CACHE_VERSION = 2
#: The dtypes an entry may be stored in, by name (recipes and options name them).
CacheDtype = Literal["float16", "bfloat16", "float32"]
CACHE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def cache_torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a cache dtype name, refusing names it cannot store."""
    if name not in CACHE_DTYPES:
        raise SlimformerError(
            f"unknown cache dtype {name!r}", f"use one of: {', '.join(CACHE_DTYPES)}"
        )
    return CACHE_DTYPES[name]


def teacher_cache_path(
    teacher,
    items: Sequence[Item],
    max_length: int,
    needs: Needs,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Where the outputs of ``teacher`` on ``items`` are (or will be) stored."""
    digest = hashlib.sha256()
    header = {
        "v": CACHE_VERSION,
        "max_length": max_length,
        "needs": _needs_key(needs),
        "dtype": str(dtype),
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    digest.update(json.dumps(teacher.model.config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in teacher.model.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    for item in items:
        digest.update(json.dumps([item.text, item.label, item.ids]).encode())
    return cache_dir() / "teacher-outputs" / f"{digest.hexdigest()[:20]}.safetensors"


class CachedTeacher:
    """Per-item teacher outputs for one item list, loaded from disk or computed once."""

    def __init__(self, stored: dict[str, torch.Tensor], shape: Shape, needs: Needs) -> None:
        self.stored, self.shape, self.needs = stored, shape, needs
        self.path: Path | None = None
        self.hit = False

    @classmethod
    def build(
        cls,
        objective,
        items: Sequence[Item],
        collate: Collator,
        batch_size: int,
        dtype: torch.dtype = torch.float16,
    ) -> CachedTeacher:
        """Load the entry for these items, or run the teacher over them and store it."""
        needs = objective.teacher_needs
        path = teacher_cache_path(objective.teacher, items, collate.max_length, needs, dtype)
        if path.is_file():
            try:
                # read, not mapped: the file may be replaced while the tensors live
                cache = cls(load(path.read_bytes()), objective.teacher_shape, needs)
                cache.path, cache.hit = path, True
                return cache
            except (
                OSError,
                RuntimeError,
                ValueError,
                SafetensorError,
            ):  # damaged: recompute, never trust
                path.unlink(missing_ok=True)
        stored: dict[str, torch.Tensor] = {}
        for start in range(0, len(items), batch_size):
            indices = list(range(start, min(len(items), start + batch_size)))
            batch = collate(indices)
            _store(stored, indices, objective.teacher_outputs(batch), batch.inputs, dtype)
        with atomic_file(path) as tmp:
            save_file(stored, str(tmp))
        cache = cls(stored, objective.teacher_shape, needs)
        cache.path = path
        return cache

    def outputs(self, indices: Sequence[int], mask: torch.Tensor) -> Outputs:
        """The teacher's outputs for items ``indices``, padded as ``mask`` is."""
        real = mask.bool()
        device = mask.device
        logits = None
        if self.needs.logits:
            logits = self._gather(indices, "logits", real, device)
        hidden = {
            j: self._gather(indices, f"h{j}", real, device) for j in sorted(self.needs.hidden)
        }
        qkv = {
            layer: tuple(self._gather(indices, f"{p}{layer}", real, device) for p in "qkv")
            for layer in sorted(self.needs.qkv)
        }
        return Outputs(mask, self.shape, logits, hidden, qkv)

    def _gather(self, indices, name: str, real: torch.Tensor, device) -> torch.Tensor:
        parts = [self.stored[f"{i}.{name}"].float() for i in indices]
        if parts[0].dim() == 1:  # one vector an item (a classifier's logits)
            return torch.stack(parts).to(device)
        out = parts[0].new_zeros(*real.shape, *parts[0].shape[1:])
        out[real.cpu()] = torch.cat(parts)
        return out.to(device)


class CachingCollator:
    """A :class:`Collator` whose batches carry the cached teacher outputs."""

    def __init__(self, collate: Collator, cache: CachedTeacher) -> None:
        self.collate, self.cache = collate, cache

    def __call__(self, indices: Sequence[int]) -> Batch:
        batch = self.collate(indices)
        batch.teacher = self.cache.outputs(batch.indices, batch.inputs["attention_mask"])
        return batch


def _store(
    stored: dict, indices: list[int], out: Outputs, inputs: dict, dtype: torch.dtype
) -> None:
    """Keep each item's real-token rows of every output the losses read."""
    real = inputs["attention_mask"].bool().cpu()
    named: list[tuple[str, torch.Tensor]] = []
    if out.logits is not None:
        named.append(("logits", out.logits))
    for j, state in out.hidden.items():
        named.append((f"h{j}", state))
    for layer, tensors in out.qkv.items():
        named.extend((f"{p}{layer}", t) for p, t in zip("qkv", tensors, strict=True))
    for row, index in enumerate(indices):
        for name, tensor in named:
            value = tensor[row].detach().float().cpu()
            if value.dim() > 1:  # per token: real positions only
                value = value[real[row]]
            stored[f"{index}.{name}"] = _narrow(value, dtype).contiguous()


def _narrow(value: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``value`` in ``dtype``, or in float32 where ``dtype`` would overflow it."""
    narrowed = value.to(dtype)
    return narrowed if bool(torch.isfinite(narrowed).all()) else value


def _needs_key(needs: Needs) -> dict:
    return {"logits": needs.logits, "hidden": sorted(needs.hidden), "qkv": sorted(needs.qkv)}
