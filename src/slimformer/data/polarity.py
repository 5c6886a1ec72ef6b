"""The ``polarity`` dataset: 200 movie-review sentences from gensim's test data.

``pang_lee_polarity.cor`` (cp1252) holds one ``__label__pos text`` or
``__label__neg text`` line per sentence, 100 of each. Label names are
``["neg", "pos"]`` (0 is negative). Split rule: the sentences are shuffled with
``random.Random(0).shuffle``; the first 160 are ``train``, the remaining 40
``test``.
"""

from __future__ import annotations

import functools

from slimformer.data.gensim_files import gensim_test_file
from slimformer.data.splits import shuffled_splits
from slimformer.data.types import ClassificationDataset, Example
from slimformer.errors import SlimformerError

POLARITY_FILE = "pang_lee_polarity.cor"
LABEL_NAMES = ("neg", "pos")
N_TRAIN = 160
_PREFIX = "__label__"


def load_polarity() -> ClassificationDataset:
    """Binary sentiment, 160 train / 40 test."""
    return ClassificationDataset(
        name="polarity",
        label_names=list(LABEL_NAMES),
        splits=shuffled_splits(polarity_examples(), N_TRAIN),
        source=f"gensim test data: {POLARITY_FILE}",
    )


@functools.lru_cache(maxsize=1)
def polarity_examples() -> tuple[Example, ...]:
    """The labelled sentences in file order."""
    path = gensim_test_file(POLARITY_FILE, "polarity")
    lines = path.read_text(encoding="cp1252").splitlines()
    return tuple(_parse(line, i + 1) for i, line in enumerate(lines) if line.strip())


def _parse(line: str, line_number: int) -> Example:
    """``__label__pos some text`` → Example(text, 1)."""
    tag, _, text = line.strip().partition(" ")
    label = tag.removeprefix(_PREFIX)
    if not tag.startswith(_PREFIX) or label not in LABEL_NAMES:
        raise SlimformerError(
            f"line {line_number} of gensim's {POLARITY_FILE} has no __label__pos/neg tag",
            "reinstall gensim (`pip install --force-reinstall gensim`)",
        )
    return Example(text=text.strip(), label=LABEL_NAMES.index(label))
