"""Label names are the contract between a labelled dataset and a classifier.

A user's ``.jsonl``/``.csv`` file numbers its labels by sorting their names,
which has nothing to do with the order of the model's head. Scoring or
training by those numbers silently compares the wrong classes, so a dataset
is matched to the model BY NAME (``config.id2label``) and renumbered to the
model's ids. A model whose names are only the ``LABEL_0``-style defaults has
no names to match; the caller decides what to do with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slimformer.data.types import ClassificationDataset, Example
from slimformer.errors import SlimformerError


def model_label_names(config: Any) -> list[str] | None:
    """The model's label names in id order, or None when it has no real names.

    None for a config without ``id2label``, with only ``LABEL_<i>`` defaults, or
    with a name used twice (names that cannot be matched one to one).
    """
    names = config_label_names(config)
    if not names or is_default_names(names) or len(set(names)) != len(names):
        return None
    return names


def config_label_names(config: Any) -> list[str]:
    """``config.id2label`` as a list in id order (keys may be ints or strings)."""
    id2label = getattr(config, "id2label", None) or {}
    num_labels = getattr(config, "num_labels", None) or len(id2label)
    if not id2label:
        return []
    return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(num_labels)]


def is_default_names(names: Sequence[str]) -> bool:
    """True for Hugging Face's placeholder names ``LABEL_0, LABEL_1, ...``."""
    return all(name == f"LABEL_{i}" for i, name in enumerate(names))


def align_labels(
    data: ClassificationDataset, model_names: Sequence[str], *, require_all: bool
) -> tuple[ClassificationDataset, list[str]]:
    """``data`` renumbered to the model's ids, and the model labels the file lacks.

    A file label the model does not know is always an error. A model label the
    file lacks is an error when ``require_all`` (training must see every class)
    and otherwise returned, so evaluation can note it.
    """
    model_names = list(model_names)
    unknown = [name for name in data.label_names if name not in model_names]
    missing = [name for name in model_names if name not in data.label_names]
    if unknown or (missing and require_all):
        raise label_mismatch(data, model_names, unknown, missing)
    if list(data.label_names) == model_names:
        return data, missing
    new_id = [model_names.index(name) for name in data.label_names]
    splits = {
        split: [Example(example.text, new_id[example.label]) for example in examples]
        for split, examples in data.splits.items()
    }
    renumbered = ClassificationDataset(
        name=data.name, label_names=model_names, splits=splits, source=data.source
    )
    return renumbered, missing


def label_mismatch(
    data: ClassificationDataset,
    model_names: list[str],
    unknown: list[str],
    missing: list[str],
) -> SlimformerError:
    """One line: what does not match, and the name-to-id mapping that was tried."""
    tried = ", ".join(
        f"{name}->{model_names.index(name) if name in model_names else '?'}"
        for name in data.label_names
    )
    problems = []
    if unknown:
        problems.append(f"label(s) {', '.join(map(repr, unknown))} the model does not know")
    if missing:
        problems.append(f"no example of the model's label(s) {', '.join(map(repr, missing))}")
    return SlimformerError(
        f"dataset {data.name!r} has {' and '.join(problems)} "
        f"(model labels: {', '.join(model_names)}; mapping tried: {tried})",
        "write the model's label names in the label column, or use a model trained on these labels",
    )


def missing_labels_note(data: ClassificationDataset, missing: list[str]) -> str:
    """The note evaluation adds when the file has no example of some model labels."""
    return (
        f"dataset {data.name!r} has no example of the model's label(s) "
        f"{', '.join(map(repr, missing))}; they count only as wrong predictions"
    )
