"""The ``intent`` and ``multiemo`` datasets: BIG-bench task files shipped in the package.

Both files are unmodified BIG-bench 1.0.0 task files (Apache-2.0, canary kept;
see ``files/NOTICE.md``). Each example's label is the argmax of its
``target_scores``; label names are the ``target_scores`` keys in file order,
which must be the same for every example. The ``Utterance: `` prompt prefix of
the intent task is removed, because a classifier should see only the
utterance.

Splits: the examples are shuffled with ``random.Random(0).shuffle``; for
``intent`` the first 500 are ``train`` and the remaining 193 ``test``; for
``multiemo`` the first ``int(0.8 * n)`` are ``train`` and the rest ``test``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from slimformer.data.splits import shuffled_splits, train_fraction_splits
from slimformer.data.types import ClassificationDataset, Example
from slimformer.errors import SlimformerError

FILES_DIR = Path(__file__).parent / "files"
INTENT_FILE = "intent_recognition.json"
MULTIEMO_FILE = "multiemo_reviews_sentence_en.json"
INTENT_TRAIN = 500
REINSTALL = "reinstall slimformer; the package data under slimformer/data/files is damaged"


def load_intent() -> ClassificationDataset:
    """SNIPS-style intents (7 classes), 500 train / 193 test."""
    label_names, examples = read_task(INTENT_FILE, strip_prefix="Utterance: ")
    return ClassificationDataset(
        name="intent",
        label_names=list(label_names),
        splits=shuffled_splits(examples, INTENT_TRAIN),
        source=f"BIG-bench intent_recognition ({INTENT_FILE})",
    )


def load_multiemo() -> ClassificationDataset:
    """English review sentences, 4-way sentiment, 80% train / 20% test."""
    label_names, examples = read_task(MULTIEMO_FILE)
    return ClassificationDataset(
        name="multiemo",
        label_names=list(label_names),
        splits=train_fraction_splits(examples),
        source=f"BIG-bench multiemo reviews_sentence_en ({MULTIEMO_FILE})",
    )


@functools.cache
def read_task(filename: str, strip_prefix: str = "") -> tuple[tuple[str, ...], tuple[Example, ...]]:
    """Label names and examples of one task file, in file order (immutable, so cacheable)."""
    path = FILES_DIR / filename
    try:
        task = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SlimformerError(f"cannot read bundled task file {path} ({exc})", REINSTALL) from exc
    raw_examples = task.get("examples") or []
    if not raw_examples:
        raise SlimformerError(f"bundled task file {path} has no examples", REINSTALL)
    label_names = tuple(raw_examples[0]["target_scores"])
    examples = tuple(
        _decode(example, label_names, strip_prefix, path, i)
        for i, example in enumerate(raw_examples)
    )
    return label_names, examples


def _decode(
    example: dict, label_names: tuple[str, ...], strip_prefix: str, path: Path, index: int
) -> Example:
    """One example: the label is the argmax of ``target_scores`` (the first on a tie)."""
    scores = example["target_scores"]
    if tuple(scores) != label_names:
        raise SlimformerError(
            f"example {index} of {path.name} has target_scores keys {list(scores)}, "
            f"unlike the first example's {list(label_names)}",
            REINSTALL,
        )
    values = [scores[name] for name in label_names]
    text = example["input"]
    if strip_prefix and text.startswith(strip_prefix):
        text = text[len(strip_prefix) :]
    return Example(text=text.strip(), label=values.index(max(values)))
