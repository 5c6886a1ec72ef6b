"""How big a model is: logical weights, bytes in memory, bytes on disk.

``sum(p.numel() for p in model.parameters())`` is wrong for compressed models:
an int8 or sparse linear keeps its weights in buffers, so it would look like a
model with no weights at all. Modules that store weights in a non-standard way
opt in to counting through a ``logical_weights()`` method; everything else is
counted through its own parameters. Disk sizes come from the files themselves,
and per-tensor sizes from the safetensors header alone, so nothing is loaded.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import nn

from slimformer.arch.base import is_embedding
from slimformer.errors import SlimformerError

# Bytes per element of each safetensors dtype. Sub-byte float formats are
# packed; their size is taken from the header's data offsets instead.
SAFETENSORS_DTYPE_BYTES: dict[str, float] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
    "C64": 8,
    "F4": 0.5,
}

# A safetensors header larger than this is a sign the file is not safetensors.
_MAX_HEADER_BYTES = 100 * 1024 * 1024


class _UniqueTensors:
    """Remembers tensors already seen, so tied weights are counted once.

    Keys are the storage address plus shape facts; tensors are kept alive so an
    address freed by a temporary (e.g. a tensor a module builds on the fly in
    ``logical_weights``) cannot be reused by a later one and be mistaken for it.
    """

    def __init__(self) -> None:
        self._seen: set[tuple] = set()
        self._alive: list[torch.Tensor] = []

    def add(self, tensor: torch.Tensor) -> bool:
        """Record ``tensor``; True if it had not been seen before."""
        key = _tensor_key(tensor)
        if key in self._seen:
            return False
        self._seen.add(key)
        self._alive.append(tensor)
        return True


def _tensor_key(tensor: torch.Tensor) -> tuple:
    """Identity of a tensor's data; meta or empty tensors fall back to ``id``."""
    ptr = tensor.data_ptr() if tensor.device.type != "meta" else 0
    if ptr == 0:
        return ("id", id(tensor))
    return (str(tensor.device), ptr, tensor.numel(), tensor.dtype)


def _counted_tensors(module: nn.Module, visited: set[int] | None = None) -> Iterator[torch.Tensor]:
    """The tensors that represent ``module``'s weights, without double descent.

    A module reachable by two paths (a compiled runner holds the model it
    compiled as well as the model) is visited once: ``logical_weights`` builds
    new tensors on every call, which the tensor check cannot recognise.
    """
    visited = set() if visited is None else visited
    if id(module) in visited:
        return
    visited.add(id(module))
    logical = getattr(module, "logical_weights", None)
    if callable(logical):
        yield from logical()
        return
    yield from module.parameters(recurse=False)
    for child in module.children():
        yield from _counted_tensors(child, visited)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """Return ``(total, nonzero)`` logical weights of ``model``.

    A module with ``logical_weights()`` is counted through the tensors it
    returns (and its children are skipped, since it speaks for them); any other
    module through its own parameters. Tied tensors count once.
    """
    seen = _UniqueTensors()
    total = nonzero = 0
    for tensor in _counted_tensors(model):
        if not seen.add(tensor):
            continue
        total += tensor.numel()
        if tensor.device.type != "meta":
            nonzero += int(torch.count_nonzero(tensor.detach()).item())
    return total, nonzero


def _persistent_buffers(model: nn.Module) -> Iterator[torch.Tensor]:
    """Buffers that ``state_dict`` would save (not caches like position ids)."""
    for module in model.modules():
        skip = getattr(module, "_non_persistent_buffers_set", set())
        for name, buffer in module.named_buffers(recurse=False):
            if buffer is not None and name not in skip:
                yield buffer


def weight_bytes_in_memory(model: nn.Module) -> int:
    """Bytes held by unique parameters and persistent buffers of ``model``."""
    seen = _UniqueTensors()
    total = 0
    for tensor in (*model.parameters(), *_persistent_buffers(model)):
        if seen.add(tensor):
            total += tensor.numel() * tensor.element_size()
    return total


def disk_bytes(path: str | os.PathLike) -> tuple[int, dict[str, int]]:
    """Return ``(total, {relative_file: bytes})`` for a file or a folder."""
    root = Path(path)
    if root.is_file():
        files = {root.name: root.stat().st_size}
    elif root.is_dir():
        files = {
            f.relative_to(root).as_posix(): f.stat().st_size
            for f in sorted(root.rglob("*"))
            if f.is_file()
        }
    else:
        raise SlimformerError(f"no file or folder at {root}", "pass the path of a saved model")
    return sum(files.values()), files


def _read_safetensors_header(file: Path) -> dict:
    """The JSON header of one safetensors file: 8-byte LE length, then JSON."""
    with file.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise SlimformerError(f"{file} is too short to be safetensors", "re-save the model")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(_MAX_HEADER_BYTES, file.stat().st_size - 8):
            raise SlimformerError(
                f"{file} has no valid safetensors header", "re-save the model with safetensors"
            )
        try:
            return json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SlimformerError(
                f"{file} has a corrupt safetensors header ({err})", "re-save the model"
            ) from err


def _entry_bytes(name: str, entry: dict, file: Path) -> int:
    """Bytes of one header entry: data offsets when present, else dtype × shape."""
    offsets = entry.get("data_offsets")
    if isinstance(offsets, list) and len(offsets) == 2:
        return int(offsets[1]) - int(offsets[0])
    dtype = str(entry.get("dtype", ""))
    if dtype not in SAFETENSORS_DTYPE_BYTES:
        raise SlimformerError(
            f"tensor {name} in {file} has unknown dtype {dtype!r} and no data offsets",
            "re-save the model with a current safetensors",
        )
    numel = 1
    for dim in entry.get("shape", []):
        numel *= int(dim)
    return int(numel * SAFETENSORS_DTYPE_BYTES[dtype] + 0.5)


def _safetensors_files(root: Path) -> list[Path]:
    """One file, or every ``*.safetensors`` in a folder (sorted, recursive)."""
    if root.is_file():
        return [root]
    if root.is_dir():
        return sorted(root.rglob("*.safetensors"))
    raise SlimformerError(f"no file or folder at {root}", "pass the path of a saved model")


def safetensors_tensor_bytes(path: str | os.PathLike) -> dict[str, int]:
    """Bytes of each tensor in a safetensors file or folder, from headers only.

    The header is a few kilobytes even for multi-gigabyte files, so this is
    instant and never loads weights. A name repeated across shards is keyed
    ``"file:name"`` for the later file so nothing is silently dropped.
    """
    root = Path(path)
    result: dict[str, int] = {}
    for file in _safetensors_files(root):
        for name, entry in _read_safetensors_header(file).items():
            if name == "__metadata__" or not isinstance(entry, dict):
                continue
            key = name if name not in result else f"{file.name}:{name}"
            result[key] = _entry_bytes(name, entry, file)
    return result


def is_linear_like(module: nn.Module) -> bool:
    """Dense linears, GPT-2 style ``Conv1D``, and compressed linear replacements."""
    if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
        return True
    if is_embedding(module):  # a compressed embedding table speaks for itself, but is no linear
        return False
    return callable(getattr(module, "logical_weights", None))


def linear_module_names(model: nn.Module) -> list[str]:
    """Qualified names of the linear-like modules in ``model``."""
    return [name for name, module in model.named_modules() if name and is_linear_like(module)]


def _owner_matches(owner: str, linear_names: Iterable[str]) -> bool:
    """Match a tensor's owner path to a module name, tolerating a model prefix.

    Saved names can carry or lack a wrapper prefix (``bert.``), so a match is
    exact or on whole dotted components at the end of either name.
    """
    for name in linear_names:
        if owner == name or owner.endswith("." + name):
            return True
        if "." in owner and name.endswith("." + owner):
            return True
    return False


def linear_weight_bytes(tensor_bytes: dict[str, int], model: nn.Module) -> int:
    """Bytes of the saved tensors that belong to ``model``'s linear-like modules.

    Every tensor owned by such a module counts (weight, bias, and for compressed
    modules their codes and scales), because together they are its weights.
    """
    names = linear_module_names(model)
    total = 0
    for key, nbytes in tensor_bytes.items():
        tensor_name = key.rsplit(":", 1)[-1]
        owner = tensor_name.rsplit(".", 1)[0] if "." in tensor_name else ""
        if owner and _owner_matches(owner, names):
            total += nbytes
    return total
