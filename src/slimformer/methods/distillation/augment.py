"""In-domain transfer text: perturbed copies of the task's own examples, for the teacher to label.

Out-of-domain text (Wikipedia sentences for an intent classifier) tells the
student little about the task's decision boundaries; the teacher's soft
outputs on slightly changed task sentences tell it a lot. This follows the
rules of Tang et al. 2019 ("Distilling Task-Specific Knowledge from BERT into
Simple Neural Networks", section 3.3): each word is masked with probability
``p_mask`` or swapped for a random word of the task's vocabulary with
``p_swap``; then, with ``p_ngram``, only a random n-gram (n from 1 to 5) of the
result is kept. TinyBERT's augmentation is the same idea with a language model
choosing the replacements. Copies are unlabelled: only the soft losses read them,
so a word change that flips the true label teaches what the teacher says
instead of a wrong hard label.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from slimformer.methods.distillation.data import Item

#: Most tries per requested copy before an example is given up (short texts repeat).
_TRIES_PER_COPY = 4


@dataclass(frozen=True)
class Perturbation:
    """The rates of Tang et al. 2019 (their defaults: 0.1 mask, 0.1 swap, 0.25 n-gram)."""

    p_mask: float = 0.1
    p_swap: float = 0.1
    p_ngram: float = 0.25
    max_ngram: int = 5


def augmented_items(
    items: Sequence[Item],
    copies: int,
    mask_word: str | None,
    seed: int = 0,
    rates: Perturbation = Perturbation(),
) -> list[Item]:
    """Up to ``copies`` distinct, unlabelled perturbations of each labelled text in ``items``.

    ``mask_word`` is the tokenizer's mask token (``[MASK]``); without one a
    masked word is dropped. Copies equal to their source or to an earlier copy
    are skipped, so very short texts may yield fewer.
    """
    texts = [item.text for item in items if item.text]
    vocabulary = sorted({word for text in texts for word in text.split()})
    rng = random.Random(seed)
    out: list[Item] = []
    for text in texts:
        seen = {text}
        for _ in range(copies * _TRIES_PER_COPY):
            if len(seen) > copies:
                break
            copy = perturb(text, rng, vocabulary, mask_word, rates)
            if copy and copy not in seen:
                seen.add(copy)
                out.append(Item(text=copy))
    return out


def perturb(
    text: str,
    rng: random.Random,
    vocabulary: Sequence[str],
    mask_word: str | None,
    rates: Perturbation = Perturbation(),
) -> str:
    """One perturbed copy of ``text``: word masks and swaps, then maybe an n-gram of it."""
    words: list[str] = []
    for word in text.split():
        draw = rng.random()
        if draw < rates.p_mask:
            if mask_word is not None:
                words.append(mask_word)
        elif draw < rates.p_mask + rates.p_swap and vocabulary:
            words.append(rng.choice(vocabulary))
        else:
            words.append(word)
    if words and rng.random() < rates.p_ngram:
        n = rng.randint(1, min(rates.max_ngram, len(words)))
        start = rng.randint(0, len(words) - n)
        words = words[start : start + n]
    return " ".join(words)
