"""Fine-tune a classification head (and the encoder) on a labelled dataset, cached.

The result is a Hugging Face folder whose config carries the dataset's label
names (``id2label``), so predictions read as labels wherever the model goes.
The cache key hashes the base weights, the data and every setting: change
any of them and the model is trained again; change none and it loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import torch
import transformers

from slimformer.data import labelled_dataset
from slimformer.data.types import ClassificationDataset
from slimformer.paths import atomic_dir, cache_dir
from slimformer.training.classifier import PLAIN_FINETUNE, train_classifier
from slimformer.training.settings import TrainSettings

#: Bumped when the training procedure changes, which invalidates cached models.
#: 2: the new head is initialised under the seed (it was not, so runs differed).
FINETUNE_VERSION = 2
DEFAULTS = {"epochs": 5, "lr": 1e-4, "batch_size": 16, "max_length": 64, "seed": 0}


def finetune_cache_path(base_dir: Path, base_name: str, dataset, **settings) -> Path:
    """Where the fine-tune of the model in ``base_dir`` on ``dataset`` with ``settings`` is cached.

    The caller (the zoo) resolves a model name to its folder, so training never
    reaches back into the loader.
    """
    data = labelled_dataset(dataset)
    key = _content_hash(Path(base_dir), data, {**DEFAULTS, **settings})
    return cache_dir() / "models" / f"{Path(str(base_name)).name}-{data.name}-{key}"


def finetune_cached(
    base_dir: Path, base_name: str, dataset, *, progress: bool = True, **settings
) -> Path:
    """Fine-tune the model in ``base_dir`` on the train split of ``dataset``; the cached folder."""
    target = finetune_cache_path(base_dir, base_name, dataset, **settings)
    if (target / "config.json").is_file():
        return target
    options = {**DEFAULTS, **settings}
    data = labelled_dataset(dataset)
    if progress:
        print(f"fine-tuning {base_name} on {data.name} once (cached in {target.parent}) ...")
    started = time.perf_counter()
    # Training needs autograd even when the caller (an evaluation, a benchmark)
    # is inside torch.inference_mode; weights made in there could not train.
    with torch.inference_mode(False), torch.enable_grad():
        torch.manual_seed(options["seed"])  # the new head's initial weights come from this
        model, tokenizer = _new_classifier(base_dir, data)
        losses = _train(model, tokenizer, data, options, progress)
    with atomic_dir(target, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        record = {
            "base": str(base_name),
            "dataset": data.name,
            "settings": options,
            "epoch_losses": losses,
            "train_seconds": round(time.perf_counter() - started, 1),
        }
        (tmp / "slimformer_finetune.json").write_text(json.dumps(record, indent=2))
    return target


def _train(model, tokenizer, data: ClassificationDataset, options: dict, progress: bool):
    """Train under the plain fine-tune procedure with ``options`` (the hashed settings)."""
    options = dict(options)
    max_length, device = options.pop("max_length"), options.pop("device", "cpu")
    settings = TrainSettings(**{**PLAIN_FINETUNE, **options})
    return train_classifier(
        model,
        tokenizer,
        data.split("train"),
        settings,
        max_length=max_length,
        device=device,
        progress=progress,
    )


def _new_classifier(base_dir, data: ClassificationDataset):
    """The base encoder with a fresh head sized and labelled for ``data``."""
    id2label = dict(enumerate(data.label_names))
    logging.getLogger("transformers.modeling_utils").setLevel(logging.ERROR)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(base_dir),
        num_labels=data.num_labels,
        id2label=id2label,
        label2id={label: i for i, label in id2label.items()},
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(base_dir))
    return model, tokenizer


def _content_hash(base_dir: Path, data: ClassificationDataset, settings: dict) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"v": FINETUNE_VERSION, **settings}, sort_keys=True).encode())
    for file in [*sorted(base_dir.glob("*.safetensors")), base_dir / "config.json"]:
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    digest.update(json.dumps(data.label_names).encode())
    for example in data.split("train"):
        digest.update(f"{example.label}\t{example.text}\n".encode())
    return digest.hexdigest()[:12]
