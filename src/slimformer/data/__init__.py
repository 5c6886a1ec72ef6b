"""Datasets: built-in named sets, user files, and calibration windows.

``load_dataset("wiki")`` or ``load_dataset("my.jsonl")`` gives a
:class:`TextDataset` or :class:`ClassificationDataset` with fixed splits;
``list_datasets()`` says what is built in and available here;
``calibration_windows`` cuts token windows for compression methods.
"""

from slimformer.data.calibration import calibration_windows
from slimformer.data.registry import list_datasets, load_dataset, resolve_dataset
from slimformer.data.tokens import tokenize_text
from slimformer.data.types import ClassificationDataset, Dataset, Example, TextDataset

__all__ = [
    "ClassificationDataset",
    "Dataset",
    "Example",
    "TextDataset",
    "calibration_windows",
    "list_datasets",
    "load_dataset",
    "resolve_dataset",
    "tokenize_text",
]
