"""One entry point that evaluates a model on a dataset by what the model does.

Causal LMs get perplexity, classifiers accuracy and macro-F1, embedding
models fidelity to the original (which needs the original's embeddings,
computed before compression). Every result has the same shape, so reports
can put any two side by side.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from slimformer.data import resolve_dataset
from slimformer.data.labels import model_label_names
from slimformer.data.types import ClassificationDataset, Dataset
from slimformer.errors import SlimformerError
from slimformer.model import SlimModel

#: The metric a report leads with for each task, and whether higher is better.
PRIMARY = {
    "causal-lm": ("perplexity", False),
    "classification": ("accuracy", True),
    "embedding": ("mean_cosine", True),
}


def evaluate(
    slim: SlimModel,
    dataset: Dataset | str | os.PathLike,
    *,
    split: str = "test",
    reference: torch.Tensor | None = None,
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate ``slim`` on ``dataset``; ``reference`` holds original embeddings."""
    data = resolve_dataset(dataset)
    if slim.task == "causal-lm":
        from slimformer.evaluate.perplexity import evaluate_perplexity

        metrics = evaluate_perplexity(
            slim.runner, slim.tokenizer, data, split=split, progress=progress, **options
        )
    elif slim.task == "classification":
        from slimformer.evaluate.classification import evaluate_classification

        metrics = evaluate_classification(
            slim.runner,
            slim.tokenizer,
            data,
            split=split,
            progress=progress,
            model_labels=model_label_names(getattr(slim.model, "config", None)),
            **options,
        )
    else:
        metrics = _embedding_fidelity(slim, data, split, reference, **options)
    metric, higher_is_better = PRIMARY[slim.task]
    return {
        "task": slim.task,
        "dataset": data.name,
        "split": split,
        "metric": metric,
        "higher_is_better": higher_is_better,
        "value": metrics[metric],
        "metrics": metrics,
    }


def embedding_texts(data: Dataset, split: str, limit: int = 512) -> list[str]:
    """Texts to embed: labelled examples, or the paragraphs of documents."""
    if isinstance(data, ClassificationDataset):
        texts = [example.text for example in data.split(split)]
    else:
        texts = [p.strip() for doc in data.split(split) for p in doc.split("\n") if p.strip()]
    if not texts:
        raise SlimformerError(f"split {split!r} of {data.name!r} has no text", "use another split")
    return texts[:limit]


def reference_embeddings(slim: SlimModel, dataset: Dataset | str, split: str = "test"):
    """The original model's embeddings, taken before compression for fidelity."""
    from slimformer.evaluate.embedding import sentence_embeddings

    texts = embedding_texts(resolve_dataset(dataset), split)
    return sentence_embeddings(slim.model, slim.tokenizer, texts)


def _embedding_fidelity(slim, data, split, reference, **options):
    from slimformer.evaluate.embedding import evaluate_embedding_fidelity

    if reference is None:
        raise SlimformerError(
            f"{slim.name} is an embedding model: its quality is fidelity to the original",
            "pass reference=reference_embeddings(original, dataset) (compress does this for you)",
        )
    texts = embedding_texts(data, split)
    return evaluate_embedding_fidelity(
        None, slim.runner, slim.tokenizer, texts, reference_embeddings=reference, **options
    )
