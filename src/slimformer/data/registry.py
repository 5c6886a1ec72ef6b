"""Dataset names, and the one entry point that turns a name or a path into a dataset.

Built-in datasets are looked up by name; anything else that looks like a
path is read as a user file (see :mod:`slimformer.data.userfiles`). Keeping the
list here means the CLI, evaluation and calibration all accept the same names
and give the same error for a typo.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from slimformer.data.bigbench import (
    FILES_DIR,
    INTENT_FILE,
    MULTIEMO_FILE,
    load_intent,
    load_multiemo,
)
from slimformer.data.gensim_files import INSTALL_HINT, gensim_available
from slimformer.data.polarity import load_polarity
from slimformer.data.types import ClassificationDataset, Dataset, TextDataset
from slimformer.data.userfiles import SUPPORTED_SUFFIXES, load_user_file
from slimformer.data.wiki import load_wiki
from slimformer.errors import SlimformerError


@dataclass(frozen=True)
class DatasetSpec:
    """What ``list_datasets`` shows about a built-in dataset, and how to load it."""

    name: str
    task: str
    source: str
    description: str
    loader: Callable[[], Dataset]
    available: Callable[[], bool]
    missing_hint: str = ""


def _bundled(filename: str) -> Callable[[], bool]:
    return lambda: (FILES_DIR / filename).is_file()


BUILTIN: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "wiki",
            "language-modeling",
            "gensim test data (Wikipedia sample, CC BY-SA)",
            "106 Wikipedia articles for perplexity and calibration",
            load_wiki,
            gensim_available,
            INSTALL_HINT,
        ),
        DatasetSpec(
            "intent",
            "classification",
            "BIG-bench intent_recognition (Apache-2.0)",
            "693 assistant utterances, 7 intents",
            load_intent,
            _bundled(INTENT_FILE),
            "reinstall slimformer",
        ),
        DatasetSpec(
            "multiemo",
            "classification",
            "BIG-bench multiemo reviews_sentence_en (Apache-2.0)",
            "2531 review sentences, 4-way sentiment",
            load_multiemo,
            _bundled(MULTIEMO_FILE),
            "reinstall slimformer",
        ),
        DatasetSpec(
            "polarity",
            "classification",
            "gensim test data (Pang & Lee movie reviews)",
            "200 movie-review sentences, positive or negative",
            load_polarity,
            gensim_available,
            INSTALL_HINT,
        ),
    )
}


def load_dataset(name_or_path: str | os.PathLike, **options: str) -> Dataset:
    """A built-in dataset by name, or a user's ``.txt`` / ``.jsonl`` / ``.csv`` file.

    ``options`` apply to user files only (``text_column``, ``label_column``,
    ``split_column``); built-in datasets take none.
    """
    if isinstance(name_or_path, str) and name_or_path in BUILTIN:
        if options:
            raise SlimformerError(
                f"dataset {name_or_path!r} takes no options (got {', '.join(sorted(options))})",
                "remove them; text_column and label_column apply to .jsonl/.csv files",
            )
        return BUILTIN[name_or_path].loader()
    if not _looks_like_path(name_or_path):
        raise SlimformerError(
            f"unknown dataset {str(name_or_path)!r}",
            f"use one of: {', '.join(BUILTIN)}, or a path to a "
            f"{', '.join(SUPPORTED_SUFFIXES)} file",
        )
    return _load_user_file(Path(name_or_path), options)


def resolve_dataset(dataset: Dataset | str | os.PathLike, **options: str) -> Dataset:
    """Pass dataset objects through; load names and paths."""
    if isinstance(dataset, TextDataset | ClassificationDataset):
        return dataset
    return load_dataset(dataset, **options)


def list_datasets(sizes: bool = True) -> list[dict]:
    """One dict per built-in dataset: name, task, split sizes, labels, source, availability.

    Split sizes need each dataset loaded once; loaders cache their parse (the
    wiki parse also on disk), so repeated calls are cheap. Pass ``sizes=False``
    for an instant listing.
    """
    return [_describe(spec, sizes) for spec in BUILTIN.values()]


def _describe(spec: DatasetSpec, sizes: bool) -> dict:
    available = spec.available()
    info: dict = {
        "name": spec.name,
        "task": spec.task,
        "description": spec.description,
        "source": spec.source,
        "available": available,
        "splits": None,
        "num_labels": None,
    }
    if not available:
        info["hint"] = spec.missing_hint
    elif sizes:
        dataset = spec.loader()
        info["splits"] = {name: len(items) for name, items in dataset.splits.items()}
        if isinstance(dataset, ClassificationDataset):
            info["num_labels"] = dataset.num_labels
    return info


def _looks_like_path(value: str | os.PathLike) -> bool:
    """Paths are PathLike, contain a separator, have an extension or exist."""
    if not isinstance(value, str):
        return True
    path = Path(value)
    return bool(path.suffix) or os.sep in value or "/" in value or path.exists()


def _load_user_file(path: Path, options: dict[str, str]) -> Dataset:
    """Forward options, turning a misspelt one into a SlimformerError rather than a TypeError."""
    allowed = ("text_column", "label_column", "split_column")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise SlimformerError(
            f"unknown dataset option(s) {', '.join(unknown)}", f"use: {', '.join(allowed)}"
        )
    return load_user_file(path, **options)


def labelled_dataset(dataset) -> ClassificationDataset:
    """A dataset (name, path or object) that must carry labels, to train or score a classifier."""
    data = resolve_dataset(dataset)
    if not isinstance(data, ClassificationDataset):
        raise SlimformerError(
            f"dataset {data.name!r} has no labels, so it cannot train a classifier",
            "use a labelled dataset such as intent, multiemo, polarity or a .jsonl/.csv file",
        )
    return data
