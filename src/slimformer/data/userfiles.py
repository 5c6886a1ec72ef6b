"""Datasets from the user's own files.

* ``.txt`` → :class:`TextDataset`. Documents are separated by blank lines.
  With at least 5 documents, document i is ``test`` when i % 5 == 0,
  ``validation`` when i % 5 == 1 and ``train`` otherwise (the ``wiki`` rule).
  With fewer than 5, every split holds every document, so a small calibration
  or smoke-test file still works everywhere (its perplexity is then not a
  held-out measurement).
* ``.jsonl`` (one JSON object a line) and ``.csv`` (with a header row) →
  :class:`ClassificationDataset`, reading ``text_column`` (default ``"text"``)
  and ``label_column`` (default ``"label"``). Labels may be strings or integers.
  When every label is an integer (in CSV: written as one) the label names are
  the sorted values as strings, so label ``2`` is index 2 of ``["0", "1", "2"]``
  only if those values occur; otherwise the names are the sorted distinct
  strings. These ids are the file's own: evaluation and training renumber
  them to a classifier's ``id2label`` by name (:mod:`slimformer.data.labels`).
  If a ``split`` column exists its values name each row's split;
  otherwise rows are shuffled with ``random.Random(0)`` and the first 80% are
  ``train``, the rest ``test``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

from slimformer.data.splits import modulo_splits, train_fraction_splits
from slimformer.data.types import ClassificationDataset, Example, TextDataset
from slimformer.errors import SlimformerError

TEXT_SUFFIXES = (".txt",)
TABLE_SUFFIXES = (".jsonl", ".csv")
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + TABLE_SUFFIXES
MIN_DOCS_FOR_SPLITS = 5
_BLANK_LINE = re.compile(r"\n[ \t]*\n")

Row = dict[str, object]


def load_user_file(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    split_column: str = "split",
) -> TextDataset | ClassificationDataset:
    """Load a ``.txt``, ``.jsonl`` or ``.csv`` file by its extension."""
    path = check_user_path(path)
    if path.suffix.lower() in TEXT_SUFFIXES:
        return load_text_file(path)
    rows = list(read_rows(path))
    if not rows:
        raise SlimformerError(
            f"dataset file {path} has no rows",
            f"add rows with {text_column!r} and {label_column!r}",
        )
    return rows_to_dataset(path, rows, text_column, label_column, split_column)


def check_user_path(path: str | Path) -> Path:
    """Fail early, in one line, on a missing file, a folder or an unsupported extension."""
    path = Path(path).expanduser()
    supported = ", ".join(SUPPORTED_SUFFIXES)
    if not path.exists():
        raise SlimformerError(
            f"dataset file {path} not found", "check the path, or use a built-in dataset name"
        )
    if path.is_dir():
        raise SlimformerError(f"{path} is a folder, not a dataset file", f"give a {supported} file")
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise SlimformerError(
            f"dataset file {path} has unsupported extension {path.suffix or '(none)'!r}",
            f"save it as one of: {supported}",
        )
    return path


def load_text_file(path: Path) -> TextDataset:
    """Blank-line separated documents, split by the i % 5 rule (or shared when few)."""
    documents = [doc.strip() for doc in _BLANK_LINE.split(read_text(path))]
    documents = [doc for doc in documents if doc]
    if not documents:
        raise SlimformerError(
            f"dataset file {path} is empty", "add text, documents separated by blank lines"
        )
    if len(documents) >= MIN_DOCS_FOR_SPLITS:
        splits = modulo_splits(documents)
    else:
        splits = {name: list(documents) for name in ("train", "validation", "test")}
    return TextDataset(name=path.stem, splits=splits, source=str(path))


def read_text(path: Path) -> str:
    """The file as UTF-8 text (a BOM is dropped); other encodings fail with a fix."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SlimformerError(
            f"dataset file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})",
            "save it as UTF-8",
        ) from exc


def read_rows(path: Path) -> Iterator[Row]:
    """The rows of a ``.jsonl`` or ``.csv`` file as dicts."""
    text = read_text(path)
    if not text.strip():
        raise SlimformerError(f"dataset file {path} is empty", "add a header and rows")
    if path.suffix.lower() == ".csv":
        yield from csv.DictReader(io.StringIO(text))
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield _json_row(path, number, line)


def _json_row(path: Path, number: int, line: str) -> Row:
    """One JSONL line, which must be a JSON object."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SlimformerError(
            f"line {number} of {path} is not valid JSON ({exc.msg})",
            "write one JSON object per line",
        ) from exc
    if not isinstance(row, dict):
        raise SlimformerError(
            f"line {number} of {path} is a JSON {type(row).__name__}, not an object",
            'write one object per line, like {"text": "...", "label": "..."}',
        )
    return row


def rows_to_dataset(
    path: Path, rows: list[Row], text_column: str, label_column: str, split_column: str
) -> ClassificationDataset:
    """Labelled examples with label names and splits decided by the module's rules."""
    check_columns(path, rows, {"text_column": text_column, "label_column": label_column})
    texts = [_text(path, i, row, text_column) for i, row in enumerate(rows)]
    raw_labels = [_raw_label(path, i, row, label_column) for i, row in enumerate(rows)]
    label_names, labels = encode_labels(raw_labels)
    examples = [Example(text, label) for text, label in zip(texts, labels, strict=True)]
    if any(split_column in row for row in rows):
        splits = _column_splits(path, rows, examples, split_column)
    else:
        splits = train_fraction_splits(examples)
    return ClassificationDataset(
        name=path.stem, label_names=label_names, splits=splits, source=str(path)
    )


def check_columns(path: Path, rows: list[Row], columns: dict[str, str]) -> None:
    """Name the columns that do exist and the option to set when one is missing."""
    present = list(dict.fromkeys(key for row in rows for key in row if key is not None))
    for option, column in columns.items():
        if column not in present:
            raise SlimformerError(
                f"dataset file {path} has no column {column!r} (columns: {', '.join(present)})",
                f"set {option} to the column to use",
            )


def _text(path: Path, index: int, row: Row, column: str) -> str:
    value = row.get(column)
    if not isinstance(value, str):
        raise SlimformerError(
            f"row {index + 1} of {path} has no text in column {column!r}",
            "give every row a text string",
        )
    return value


def _raw_label(path: Path, index: int, row: Row, column: str) -> int | str:
    value = row.get(column)
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise SlimformerError(
        f"row {index + 1} of {path} has label {value!r} in column {column!r}",
        "give every row a label that is a non-empty string or an integer",
    )


def encode_labels(raw: list[int | str]) -> tuple[list[str], list[int]]:
    """Label names and each row's index into them.

    All-integer labels keep numeric order (``10`` after ``2``); anything else is
    compared as text, so the mapping never depends on row order.
    """
    as_ints = [_as_int(value) for value in raw]
    if all(value is not None for value in as_ints):
        values = sorted(set(as_ints))
        index = {value: i for i, value in enumerate(values)}
        return [str(value) for value in values], [index[value] for value in as_ints]
    names = sorted({str(value) for value in raw})
    index = {name: i for i, name in enumerate(names)}
    return names, [index[str(value)] for value in raw]


def _as_int(value: int | str) -> int | None:
    """An integer label, or None; ``"01"`` stays text so no two labels merge."""
    if isinstance(value, int):
        return value
    try:
        number = int(value)
    except ValueError:
        return None
    return number if str(number) == value else None


def _column_splits(
    path: Path, rows: list[Row], examples: list[Example], column: str
) -> dict[str, list[Example]]:
    """Splits named by the file itself, in order of first appearance."""
    splits: dict[str, list[Example]] = {}
    for i, (row, example) in enumerate(zip(rows, examples, strict=True)):
        name = row.get(column)
        if not isinstance(name, str) or not name.strip():
            raise SlimformerError(
                f"row {i + 1} of {path} has no value in split column {column!r}",
                "give every row a split such as train or test, or remove the column",
            )
        splits.setdefault(name.strip(), []).append(example)
    return splits
