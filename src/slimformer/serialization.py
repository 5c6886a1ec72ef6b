"""Saving and reloading models, plain or compressed, as Hugging Face folders.

A compressed model is saved as a normal Hugging Face folder (config.json,
model.safetensors, tokenizer files) whose config.json carries a ``slimformer``
section: the format version, a ``quant_method`` summary and, for every
replaced module, its kind and shape. Loading builds the plain architecture
from the config, swaps in empty compressed modules of the saved kinds, then
reads the tensors strictly, so every byte on disk has exactly one owner.

A module or tensor used at several places (cross-layer sharing: block 4 *is*
block 3) is saved once, under its first name; the section's ``shared`` entry
maps every other name to that one (``{"model.layers.4": "model.layers.3"}``)
and the loader ties them again, so the model comes back shared. Folders with
no ``shared`` entry (every folder saved before it existed) load as before.
Plain ``transformers`` cannot read such a folder back: it knows no aliases.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors.torch import load_file
from torch import nn

from slimformer.arch.structure import constructing, rebuild_structure, saved_structure
from slimformer.errors import SlimformerError
from slimformer.model import SlimModel, task_of
from slimformer.nn.finite import check_tensors_finite
from slimformer.nn.registry import compressed_modules, module_class, replace_module
from slimformer.nn.sharing import is_aliased, shared_aliases, tie_aliases, without_aliases

FORMAT_VERSION = 1


def compression_metadata(model: nn.Module, methods: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``slimformer`` section of config.json, derived from the model as it is now."""
    modules = {
        name: {"kind": module.kind, "spec": module.spec()}
        for name, module in compressed_modules(model).items()
    }
    kinds = sorted({entry["kind"] for entry in modules.values()})
    meta = {
        "format_version": FORMAT_VERSION,
        "quant_method": "+".join(kinds) if kinds else None,
        "methods": methods,
        "modules": modules,
    }
    shared = shared_aliases(model, skip=_tied_keys(model) | _hf_tied_keys(model))
    if shared:  # only then: unshared models keep the exact config they always had
        meta["shared"] = shared
    structure = saved_structure(model)  # per-layer sizes after structured pruning, if needed
    if structure is not None:
        meta["structure"] = structure
    return meta


def save_model_dir(slim: SlimModel, folder: str | os.PathLike) -> Path:
    """Write model, config and tokenizer into ``folder`` (which should be temporary)."""
    folder = Path(folder)
    config = slim.model.config
    config.slimformer = compression_metadata(slim.model, slim.compression.get("methods", []))
    # The adapter undoes what its prepare() changed (GPT-2: Conv1D layout), so the
    # folder holds the model class's own layout; None means it already does.
    state = slim.adapter.state_dict_to_save()
    shared = config.slimformer.get("shared")
    if shared:  # each shared tensor once; transformers refuses untied duplicates anyway
        state = without_aliases(state if state is not None else slim.model.state_dict(), shared)
    _check_finite(state if state is not None else slim.model.state_dict())
    slim.model.save_pretrained(folder, state_dict=state)
    if slim.tokenizer is not None:
        slim.tokenizer.save_pretrained(folder)
    return folder


def _check_finite(state: dict[str, torch.Tensor]) -> None:
    """Refuse to write a NaN or inf (an inf scale loads fine and scores like chance)."""
    check_tensors_finite(
        state.items(),
        "refusing to save non-finite values",
        "the model went NaN/inf before or during compression: check the input model's "
        "weights, or compress in float32; nothing was written",
    )


def load_model_dir(location: str | os.PathLike, name: str | None = None) -> SlimModel:
    """Load a Hugging Face folder or hub id; rebuild compressed modules if any."""
    source = str(location)
    try:
        config = transformers.AutoConfig.from_pretrained(source)
    except OSError as exc:
        raise SlimformerError(
            f"could not read a model config from {source!r} ({_first_line(exc)})",
            "check the path or, for a hub id, that this machine has network access",
        ) from exc
    if Path(source).is_dir():
        check_weights(Path(source))
    model_class = _model_class(config)
    meta = getattr(config, "slimformer", None)
    if meta:
        model = _load_compressed(model_class, config, Path(source), meta)
    else:
        # Read, not memory-mapped: methods replace weights layer by layer, and a mapped
        # file keeps every replaced weight resident until the last one is gone.
        model = _from_pretrained(model_class, source, config)
    model.eval()
    tokenizer = _load_tokenizer(source)
    return SlimModel(
        model=model,
        tokenizer=tokenizer,
        name=name or source,
        source=source,
        task=task_of(model),
        compression=dict(meta or {}),
    )


#: Weight files transformers reads from a folder (safetensors, then the older .bin).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")


def check_weights(folder: Path) -> None:
    """Refuse a folder whose weights are missing or unreadable, before anything is built.

    A config with no weights, or a truncated or garbage ``.safetensors``, ended
    in a traceback from transformers or safetensors. Only each file's header
    is read here (cheap); ``.bin`` files are left to transformers, which reads
    them with ``weights_only=True``.
    """
    from safetensors import safe_open

    files = [f for f in folder.iterdir() if f.is_file() and f.name.endswith(_WEIGHT_SUFFIXES)]
    if not files:
        raise SlimformerError(
            f"{folder} has a config.json but no weights (no .safetensors file, no .bin)",
            "copy the model's weight files into it, or save the model again",
        )
    for file in files:
        if file.suffix != ".safetensors":
            continue
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except Exception as exc:  # SafetensorError, OSError: a truncated or foreign file
            raise SlimformerError(
                f"{file} is not a readable safetensors file ({_first_line(exc)})",
                "the file is truncated or damaged; copy or save the model again",
            ) from None


def _from_pretrained(model_class: type, source: str, config: Any) -> nn.Module:
    """``from_pretrained``, with a ``.bin`` holding more than tensors refused in one line.

    transformers reads ``.bin`` files with ``weights_only=True``, so a crafted
    pickle never runs; this turns its refusal into the one-line error.
    """
    try:
        return model_class.from_pretrained(source, dtype=_saved_dtype(config), disable_mmap=True)
    except pickle.UnpicklingError:
        raise SlimformerError(
            f"the weights in {source} hold objects beyond tensors and were not loaded "
            "(loading them could run code)",
            "use a model saved as safetensors, or re-save it from a trusted copy",
        ) from None


def _model_class(config: Any) -> type:
    for arch in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, arch, None)
        if cls is not None:
            return cls
    return transformers.AutoModel


def _load_compressed(model_class: type, config: Any, folder: Path, meta: dict) -> nn.Module:
    version = meta.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise SlimformerError(
            f"{folder} was saved in slimformer format {version}, newer than this version reads",
            "upgrade slimformer",
        )
    structure = meta.get("structure")
    with constructing(config, structure):
        model = (
            model_class(config)
            if model_class is not transformers.AutoModel
            else (transformers.AutoModel.from_config(config))
        )
    # Float weights come back in the dtype they were saved in (a bf16 model stays bf16);
    # compressed modules are created after this and keep their own dtypes.
    model.to(_saved_dtype(config))
    damaged = SlimformerError(
        f"{folder} does not match its config.json", "the folder is damaged; save the model again"
    )
    try:
        if structure:
            rebuild_structure(model, structure)
        for name, entry in meta.get("modules", {}).items():
            replace_module(model, name, module_class(entry["kind"]).from_spec(entry["spec"]))
        shared = meta.get("shared") or {}
        tie_aliases(model, shared)  # after the swaps, so an alias gets the compressed module
        state = _read_state_dict(folder)
        result = model.load_state_dict(state, strict=False)
    except SlimformerError:
        raise
    except (AttributeError, KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise damaged from exc
    tied = _tied_keys(model)
    missing = [
        key for key in result.missing_keys if key not in tied and not is_aliased(key, shared)
    ]
    if missing or result.unexpected_keys:
        raise SlimformerError(
            f"{folder} does not match its config (missing {missing[:3]}, "
            f"unexpected {result.unexpected_keys[:3]})",
            "the folder is damaged or was edited; save the model again",
        )
    if tied:
        model.tie_weights()
    return model


def _saved_dtype(config: Any) -> torch.dtype:
    """The float dtype config.json records (float32 when it records none)."""
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32


def _read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise SlimformerError(f"no .safetensors file in {folder}", "save the model again")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            state.update(load_file(file))
        except Exception as exc:  # safetensors raises its own error type for damaged files
            raise SlimformerError(
                f"{file} cannot be read ({_first_line(exc)})", "the file is damaged; save again"
            ) from exc
    return state


def _tied_keys(model: nn.Module) -> set[str]:
    """State-dict keys that tie to another tensor and so are not saved on their own."""
    # transformers 5 gives a dict (tied key -> source), older versions a list: keys either way.
    keys = set(getattr(model, "_tied_weights_keys", None) or ())
    if not getattr(model.config, "tie_word_embeddings", False):
        keys = {key for key in keys if "lm_head" not in key}
    return keys


def _hf_tied_keys(model: nn.Module) -> set[str]:
    """Every key transformers ties itself, submodels included (encoder/decoder embeddings)."""
    return set(getattr(model, "all_tied_weights_keys", None) or ())


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "tokenizer.model")


def _load_tokenizer(source: str) -> Any:
    """The folder's tokenizer, or None when it has none (never one made up from the config)."""
    folder = Path(source)
    if folder.is_dir() and not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        return None
    try:
        return transformers.AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError):
        return None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def read_config_json(folder: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(folder) / "config.json").read_text())
