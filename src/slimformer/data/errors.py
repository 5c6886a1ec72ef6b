"""Error messages shared by the dataset loaders."""

from __future__ import annotations

from slimformer.errors import SlimformerError


def missing_split(dataset: str, split: str, available: list[str]) -> SlimformerError:
    return SlimformerError(
        f"dataset {dataset!r} has no split {split!r}",
        f"use one of: {', '.join(available)}",
    )
