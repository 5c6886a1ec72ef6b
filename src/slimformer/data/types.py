"""The shapes datasets take, shared by loaders, evaluation and training.

Two kinds cover every task slimformer evaluates: plain documents for
language modelling and calibration, and labelled texts for classification.
Splits are named (``train``, ``validation``, ``test``) and fixed by a seeded
rule, so every run and every user sees the same examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Example:
    """One labelled text; ``label`` indexes ``ClassificationDataset.label_names``."""

    text: str
    label: int


@dataclass
class TextDataset:
    """Documents for language modelling, split by a fixed rule."""

    name: str
    splits: dict[str, list[str]]
    source: str = ""
    task: str = field(default="language-modeling", init=False)

    def split(self, name: str) -> list[str]:
        from slimformer.data.errors import missing_split

        if name not in self.splits:
            raise missing_split(self.name, name, list(self.splits))
        return self.splits[name]

    def texts(self, split: str) -> list[str]:
        """The raw texts of one split, so text-only consumers accept either dataset kind."""
        return list(self.split(split))

    def joined(self, split: str, separator: str = "\n\n") -> str:
        """The documents of one split joined into one text, as perplexity reads it."""
        return separator.join(self.split(split))


@dataclass
class ClassificationDataset:
    """Labelled texts with the label names that make predictions readable."""

    name: str
    label_names: list[str]
    splits: dict[str, list[Example]]
    source: str = ""
    task: str = field(default="classification", init=False)

    def split(self, name: str) -> list[Example]:
        from slimformer.data.errors import missing_split

        if name not in self.splits:
            raise missing_split(self.name, name, list(self.splits))
        return self.splits[name]

    def texts(self, split: str) -> list[str]:
        """The texts of one split without labels, for calibration or language modelling."""
        return [example.text for example in self.split(split)]

    def joined(self, split: str, separator: str = "\n\n") -> str:
        """The texts of one split joined into one text, as calibration reads it."""
        return separator.join(self.texts(split))

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


Dataset = TextDataset | ClassificationDataset
