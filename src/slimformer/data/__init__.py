"""Datasets: built-in named sets and user files.

``load_dataset("wiki")`` or ``load_dataset("my.jsonl")`` gives a
:class:`TextDataset` or :class:`ClassificationDataset` with fixed splits;
``list_datasets()`` says what is built in and available here.
(Calibration windows are cut by :mod:`slimformer.calibration`.)
"""

from slimformer.data.registry import (
    labelled_dataset,
    list_datasets,
    load_dataset,
    resolve_dataset,
)
from slimformer.data.tokens import tokenize_text
from slimformer.data.types import ClassificationDataset, Dataset, Example, TextDataset

__all__ = [
    "ClassificationDataset",
    "Dataset",
    "Example",
    "TextDataset",
    "labelled_dataset",
    "list_datasets",
    "load_dataset",
    "resolve_dataset",
    "tokenize_text",
]
